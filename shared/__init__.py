"""Code shared by the socorg services: settings, events, outbox, consumer, auth, errors, web plumbing."""
