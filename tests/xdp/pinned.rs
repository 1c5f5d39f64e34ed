//! Pinned attachment through the CLI: persistence across viewers, detach, stale pins, rules
//! commands and their bad input.
