"""Points, leaderboards and friendships (issue 4)."""
