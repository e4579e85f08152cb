"""Writes of the labeling app, one module per concern:
uploads (new photos), moderation (reports, hide/restore, delete), votes (casting, consensus upkeep),
exports (APPA-REAL zips), imports (existing datasets), simulation (crowd simulator)."""
