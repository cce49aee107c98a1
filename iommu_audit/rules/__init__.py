"""Rules: pure functions of (facts, profile, device) returning a Verdict. No I/O."""
