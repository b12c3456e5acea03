"""Where data come from: fetching and verifying declared files, and one reader module per raw format."""
