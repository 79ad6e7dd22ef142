//! `location within_km` in SQL: the steps of [`am_core::geo`], one for one and in the same
//! order, over `user_locations`, with every constant bound. Each step is a column of a
//! derived table, so no expression is written twice and engines evaluate exactly the IEEE
//! operations the reference evaluator does.

use am_core::geo::{Circle, HALF_RAD_PER_DEG, RAD_PER_DEG, SIN_COEFFS, TINY_DEG};
use sea_query::{Alias, ExprTrait, Func, Query, SelectStatement};

type SqlExpr = sea_query::Expr;

/// The table of users' locations.
pub const USER_LOCATIONS: &str = "user_locations";

fn col(name: &str) -> SqlExpr {
    SqlExpr::col(Alias::new(name))
}

fn val(x: f64) -> SqlExpr {
    SqlExpr::val(x)
}

/// `CASE WHEN |deg| < TINY THEN 0 ELSE deg * factor END`; `|deg|` is written only where the
/// degrees can be negative (they are the same number otherwise).
fn scaled(deg: SqlExpr, may_be_negative: bool, factor: f64) -> SqlExpr {
    let size = if may_be_negative {
        Func::abs(deg.clone()).into()
    } else {
        deg.clone()
    };
    SqlExpr::case(size.lt(val(TINY_DEG)), SqlExpr::cust("0"))
        .finally(deg.mul(val(factor)))
        .into()
}

/// `x + x * x2 * (c0 + x2 * (c1 + … + x2 * c9))`: [`am_core::geo::sin_poly`].
fn sine(x: &str, x2: &str) -> SqlExpr {
    let mut p = val(SIN_COEFFS[9]);
    for c in SIN_COEFFS[..9].iter().rev() {
        p = val(*c).add(col(x2).mul(p));
    }
    col(x).add(col(x).mul(col(x2)).mul(p))
}

/// The users within the circle: `SELECT user_id FROM (...) WHERE haversine <= max`.
pub fn members(circle: &Circle) -> SelectStatement {
    let c = circle.sql_parts();
    let latitude = || col("latitude");
    let lon_gap = || SqlExpr::from(Func::abs(col("longitude").sub(val(c.lon))));
    let folded: SqlExpr = SqlExpr::case(
        lon_gap().gt(SqlExpr::cust("180")),
        SqlExpr::cust("360").sub(lon_gap()),
    )
    .finally(lon_gap())
    .into();
    let colatitude = SqlExpr::cust("90").sub(Func::abs(latitude()));
    let mut angles = Query::select();
    angles
        .column(Alias::new("user_id"))
        .expr_as(
            scaled(latitude().sub(val(c.lat)), true, HALF_RAD_PER_DEG),
            Alias::new("a"),
        )
        .expr_as(scaled(folded, false, HALF_RAD_PER_DEG), Alias::new("b"))
        .expr_as(scaled(colatitude, false, RAD_PER_DEG), Alias::new("c"))
        .from(Alias::new(USER_LOCATIONS))
        .and_where(latitude().gte(val(c.lat_min)))
        .and_where(latitude().lte(val(c.lat_max)));
    let mut squares = Query::select();
    squares.column(Alias::new("user_id"));
    for x in ["a", "b", "c"] {
        squares
            .column(Alias::new(x))
            .expr_as(col(x).mul(col(x)), Alias::new(format!("{x}2")));
    }
    squares.from_subquery(angles, Alias::new("g1"));
    let mut sines = Query::select();
    sines
        .column(Alias::new("user_id"))
        .expr_as(sine("a", "a2"), Alias::new("sa"))
        .expr_as(sine("b", "b2"), Alias::new("sb"))
        .expr_as(sine("c", "c2"), Alias::new("sc"))
        .from_subquery(squares, Alias::new("g2"));
    // sa * sa + cos φ₀ * sc * sb * sb, as `am_core::geo::haversine_with` adds it up.
    let haversine = col("sa")
        .mul(col("sa"))
        .add(val(c.cos_lat).mul(col("sc")).mul(col("sb")).mul(col("sb")));
    let mut q = Query::select();
    q.column(Alias::new("user_id"))
        .from_subquery(sines, Alias::new("g3"))
        .and_where(haversine.lte(val(c.max_h)));
    q
}

/// `user_id IN (<members>)`: false for a user without a location, so `NOT` is the
/// complement.
pub fn within(user_id: SqlExpr, circle: &Circle) -> SqlExpr {
    user_id.in_subquery(members(circle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;

    /// Validation counts a circle's values towards a rule's limit of bound values.
    #[test]
    fn binds_as_many_values_as_validation_counts() {
        let circle = Circle::new(1.0, 2.0, 3.0).expect("in range");
        let (_, values) = Dialect::Sqlite.build(&members(&circle));
        assert_eq!(values.0.len(), am_core::geo::BOUND_VALUES);
    }
}
