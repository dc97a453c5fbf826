"""Optional integrations (testing helpers, framework fixups)."""
