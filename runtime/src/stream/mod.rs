//! HStreamDB stream client (see issue 3).
