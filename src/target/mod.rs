//! `novaload target`: the NovaCron-compatible reference server (see issue 6).
//! Placeholder until the target lands.
