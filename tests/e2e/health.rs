//! Health checks end to end.
