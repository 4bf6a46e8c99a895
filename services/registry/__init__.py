"""registry: the social-organization lifecycle (apply, approve, terms, reports, risk lists, deregistration)."""
