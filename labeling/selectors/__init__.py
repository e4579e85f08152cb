"""Reads of the labeling app, one module per concern (photos, votes, exports, research)."""
