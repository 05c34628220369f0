"""Networks: the emulated link (alpha-beta model) and the real network lab (namespaces + tc)."""
