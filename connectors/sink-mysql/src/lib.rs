//! `sink-mysql` (being written).
