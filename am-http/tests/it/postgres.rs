//! The PostgreSQL server the integration tests use when built with the `postgres` feature
//! (shared by the am-http and am-cli suites).

/// A `postgres://` URI of a new, empty database for one test: every call names a database
/// of its own, so tests running at once never see each other's rules or data.
pub fn postgres_location() -> String {
    am_testkit::postgres::server().fresh_database()
}
