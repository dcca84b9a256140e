"""Helpers shared by test suites: real components started for tests (mosquitto, swtpm, the daemon) and
generated inputs.  Not tests themselves."""
