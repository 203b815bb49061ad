"""Claims: opens every claim an injury report entitles the member to, and runs their lifecycle."""
