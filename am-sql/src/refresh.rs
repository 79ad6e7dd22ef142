//! refresh
