//! The durable privacy ledger: every DP step authorized against each dataset's budget and written before release.
