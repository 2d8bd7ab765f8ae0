"""A FOGIS-compatible server for tests and the demo.

A stdlib HTTP server on 127.0.0.1 in a background thread that speaks the wire protocol of the
design notes (section 4): the classic ASP.NET login form or the OAuth identity-server detour, the
session cookie, and the match-list page method with its `{"d": "<json>"}` answer. Failures are
injected per request, and everything is reachable over HTTP for subprocess tests and the demo.

    with FakeFogis(users={"anna": "pw"}, login_style="oauth") as fogis:
        fogis.set_matches([make_match(1001), make_match(1002, installd=True)])
        fogis.fail_next("500")
        ...  # point a FogisClient at fogis.base_url

As a program (samples unless --matches gives a JSON list of records):
    python -m tests.fakes.fogis --port 8001 --user anna --password pw [--matches f.json]
and drive it with
    PUT  /_control/matches   a JSON list of match records
    PUT  /_control/users     {"username": "password", ...}
    PUT  /_control/matches?user=NAME   that user's own list (others keep the shared one)
    POST /_control/fail      {"kind": "500", "count": 1}
    POST /_control/expire    (drops every session)
    GET  /_control/state     {"logins", "loginAttempts", "fetches", "lastFilter", ...}
    POST /_control/peak      (counts the most requests in flight afresh)
"""
