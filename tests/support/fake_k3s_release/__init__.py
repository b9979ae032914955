"""fake_k3s_release: a test double of the k3s release artifacts (see k3s.py for what it stands in for)."""
