"""Writes of the leaderboard app: the points ledger and its totals (`awards`), friendships
(`friends`), and the rebuild of the ledger from votes and uploads (`ledger_rebuild`)."""
