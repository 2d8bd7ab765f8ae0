"""Match records with FOGIS's field names, realistic enough for the diff and the demo."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_ZONE = ZoneInfo("Europe/Stockholm")


ROLES = {
    "Dom": (1, "Huvuddomare"),
    "AD1": (2, "Assisterande domare 1"),
    "AD2": (3, "Assisterande domare 2"),
    "4:e dom": (4, "Fjärdedomare"),
}


def make_referee(domareid: int, name: str, role: str = "Dom", **overrides: Any) -> dict[str, Any]:
    """One entry of `domaruppdraglista`, contact details included (they are not compared)."""
    role_id, role_name = ROLES.get(role, (9, role))
    first = name.split(maxsplit=1)[0].lower()
    return {
        "domaruppdragid": domareid * 10 + role_id,
        "domareid": domareid,
        "personid": 500000 + domareid,
        "personnamn": name,
        "domarrollid": role_id,
        "domarrollnamn": role_name,
        "domarrollkortnamn": role,
        "mobiltelefon": f"070-{domareid:07d}",
        "telefon": "",
        "epostadress": f"{first}.{domareid}@example.se",
        "adress": "Storgatan 1",
        "postnr": "123 45",
        "postort": "Stockholm",
        "domaruppdragstatus": "Tilldelat",
        **overrides,
    }


def dotnet_date(day: date, kickoff: str) -> str:
    """FOGIS's `tid`: the kick-off instant as .NET "/Date(ms)/", read in Swedish time."""
    hour, minute = (int(part) for part in kickoff.split(":")[:2])
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=_ZONE)
    return f"/Date({int(moment.timestamp() * 1000)})/"


def make_match(matchid: int, *, on: date | None = None, **overrides: Any) -> dict[str, Any]:
    """A record with FOGIS's field names; overrides use them too (e.g. `installd=True`).

    The default date is `on`, else 1 to 28 days after today (inside any default window), and
    `tid` follows `speldatum`/`avsparkstid` unless given.
    """
    day = on or date.today() + timedelta(days=matchid % 28 + 1)
    home, away = 7000 + matchid % 50, 7100 + matchid % 50
    record: dict[str, Any] = {
        "__type": "MDK.Domain.MatchAttRapportera",
        "matchid": matchid,
        "matchnr": f"{100000 + matchid:06d}",
        "fotbollstypid": 1,
        "speldatum": day.isoformat(),
        "avsparkstid": "19:00",
        "anlaggningid": 3000 + matchid % 20,
        "anlaggningnamn": f"Idrottsplats {matchid % 20}",
        "anlaggningLatitud": 59.33,
        "anlaggningLongitud": 18.06,
        "lag1lagid": home,
        "lag1namn": f"IF Hemma {home}",
        "lag1foreningid": home + 1000,
        "lag2lagid": away,
        "lag2namn": f"BK Borta {away}",
        "lag2foreningid": away + 1000,
        "tavlingid": 90000 + matchid % 5,
        "tavlingnamn": f"Division {matchid % 5 + 1}, herrar",
        "tavlingskategorinamn": "Seniorer",
        "installd": False,
        "avbruten": False,
        "uppskjuten": False,
        "domaruppdraglista": [
            make_referee(20000 + matchid % 300, "Anna Andersson"),
            make_referee(21000 + matchid % 300, "Bo Berg", "AD1"),
            make_referee(22000 + matchid % 300, "Cia Carlsson", "AD2"),
        ],
        # Present on real records and deliberately not compared.
        "matchlag1mal": None,
        "matchlag2mal": None,
        "matchresultatlista": [],
        "antalaskadare": None,
        "matchrapportgodkandavdomare": False,
        "kontaktpersoner": [{"namn": "Kalle Kansli", "telefon": "08-123 456"}],
        **overrides,
    }
    if "tid" not in overrides:
        record["tid"] = dotnet_date(date.fromisoformat(record["speldatum"]), record["avsparkstid"])
    return record


def sample_matches(today: date | None = None) -> list[dict[str, Any]]:
    """A small, varied list for demos, dated relative to `today` so it stays in the window."""
    base = today or date.today()
    return [
        make_match(6143001, on=base + timedelta(days=2), avsparkstid="18:30"),
        make_match(6143002, on=base + timedelta(days=5), avsparkstid="13:00"),
        make_match(6143003, on=base + timedelta(days=9), uppskjuten=True),
        make_match(6143004, on=base - timedelta(days=3), matchlag1mal=2, matchlag2mal=1),
    ]
