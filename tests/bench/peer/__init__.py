"""The operator a user would write instead of ours, run by the benchmark on the same watchers."""
