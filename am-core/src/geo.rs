//! Great-circle distance for `location within_km`: the definition every engine reproduces.
//!
//! The haversine of the central angle between a user's point and the circle's centre,
//! `h = sin²(Δφ/2) + cos φ₀ · cos φ · sin²(Δλ/2)`, is compared with `sin²(km / 2R)` (R =
//! 6371.0088 km): the same as `distance <= km`, boundary included, without `asin` or `sqrt`.
//! Sines are one fixed polynomial and everything else the four IEEE operations, each in a
//! fixed order, so SQLite, PostgreSQL and Spark, which round those operations exactly, give
//! the bit-identical `h` and the same members as this module; no engine's own `sin` (whose
//! last bits differ between libm and the JVM) is involved. [`Circle::sql_parts`] hands the
//! renderer the constants to bind.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use serde::Serialize;

/// The mean Earth radius (IUGG), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// The largest radius a rule may ask for: about half of the Earth's circumference, so
/// `km / 2R` stays below π/2, where the sine polynomial is exact to the last bits.
pub const MAX_RADIUS_KM: f64 = 20_000.0;

/// Degrees to radians.
pub const RAD_PER_DEG: f64 = std::f64::consts::PI / 180.0;
/// Degrees to half the angle in radians.
pub const HALF_RAD_PER_DEG: f64 = std::f64::consts::PI / 360.0;
/// Angle differences below this many degrees count as 0, so no product of small terms
/// underflows (PostgreSQL fails a multiplication that underflows); it moves a distance by
/// under 10⁻²⁰ km.
pub const TINY_DEG: f64 = 1e-28;

/// The values one `within_km` test binds in SQL: the latitude band (2), the centre's
/// latitude (2) and longitude (6), the cut-off for tiny angles (3), the degree factors (3),
/// the sine coefficients of three sines (30), cos φ₀ and the largest haversine (2).
pub const BOUND_VALUES: usize = 48;

/// Coefficients of `sin x = x + x·x²·(c₀ + x²·(c₁ + … + x²·c₉))`: Taylor's, to x²¹/21!,
/// which on [-π/2, π/2] is within 10⁻¹⁸ of the sine.
pub const SIN_COEFFS: [f64; 10] = sin_coeffs();

const fn sin_coeffs() -> [f64; 10] {
    let mut out = [0.0; 10];
    let mut c = 1.0;
    let mut k = 0;
    while k < 10 {
        let n = (2 * k + 2) as f64;
        c = -c / (n * (n + 1.0));
        out[k] = c;
        k += 1;
    }
    out
}

/// The sine of `x` in [-π/2, π/2], given `x2 = x * x`, in exactly the order the SQL renders.
pub fn sin_poly(x: f64, x2: f64) -> f64 {
    let mut p = SIN_COEFFS[9];
    for c in SIN_COEFFS[..9].iter().rev() {
        p = c + x2 * p;
    }
    x + x * x2 * p
}

fn sin(x: f64) -> f64 {
    sin_poly(x, x * x)
}

/// A point on the sphere in degrees: latitude in [-90, 90], longitude in [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl GeoPoint {
    /// A point with both coordinates in range (and not NaN).
    pub fn new(lat: f64, lon: f64) -> Option<GeoPoint> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(GeoPoint { lat, lon })
    }
}

/// `|a| < TINY_DEG ? 0 : a * factor`, as the SQL's `CASE` has it.
fn scaled(deg: f64, factor: f64) -> f64 {
    if deg.abs() < TINY_DEG {
        0.0
    } else {
        deg * factor
    }
}

/// A longitude difference folded into [0, 180] degrees.
fn folded_lon(lon: f64, lon0: f64) -> f64 {
    let d = (lon - lon0).abs();
    if d > 180.0 { 360.0 - d } else { d }
}

/// The circle of a `within_km` test: a centre and a radius in kilometres, inclusive.
/// Compared and hashed by value (-0 is 0), ordered by latitude, longitude, radius.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Circle {
    pub lat: f64,
    pub lon: f64,
    pub km: f64,
}

/// The constants the SQL binds for a circle (see [`Circle::sql_parts`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircleSql {
    pub lat: f64,
    pub lon: f64,
    /// cos φ₀, computed as the SQL computes cos φ: the sine of the colatitude.
    pub cos_lat: f64,
    /// sin²(km / 2R).
    pub max_h: f64,
    /// The latitude band no member leaves (see [`Circle::lat_band`]).
    pub lat_min: f64,
    pub lat_max: f64,
}

impl Circle {
    /// A circle with its centre in range and `0 < km <= MAX_RADIUS_KM`.
    pub fn new(lat: f64, lon: f64, km: f64) -> Option<Circle> {
        let center = GeoPoint::new(lat, lon)?;
        (km > 0.0 && km <= MAX_RADIUS_KM).then_some(Circle {
            // `+ 0.0` turns -0 into 0, so equal circles have equal bits.
            lat: center.lat + 0.0,
            lon: center.lon + 0.0,
            km,
        })
    }

    fn bits(&self) -> [u64; 3] {
        [self.lat.to_bits(), self.lon.to_bits(), self.km.to_bits()]
    }

    /// sin²(km / 2R): the largest haversine a member may have.
    pub fn max_haversine(&self) -> f64 {
        let s = sin(self.km / (2.0 * EARTH_RADIUS_KM));
        s * s
    }

    /// Whether every point of `self` is a point of `other`: the same centre and a threshold
    /// no larger, which is exactly what membership compares.
    pub fn inside(&self, other: &Circle) -> bool {
        self.lat == other.lat
            && self.lon == other.lon
            && self.max_haversine() <= other.max_haversine()
    }

    /// The latitudes members can have: a point more than `km / R` away in latitude is more
    /// than `km` away (the distance is at least R·|Δφ|). Widened by a millionth and 10⁻⁹
    /// degrees for rounding; indexed columns make it cheap, and the exact test decides.
    pub fn lat_band(&self) -> (f64, f64) {
        let reach = self.km / EARTH_RADIUS_KM / RAD_PER_DEG * (1.0 + 1e-6) + 1e-9;
        ((self.lat - reach).max(-90.0), (self.lat + reach).min(90.0))
    }

    pub fn sql_parts(&self) -> CircleSql {
        let (lat_min, lat_max) = self.lat_band();
        CircleSql {
            lat: self.lat,
            lon: self.lon,
            cos_lat: sin(scaled(90.0 - self.lat.abs(), RAD_PER_DEG)),
            max_h: self.max_haversine(),
            lat_min,
            lat_max,
        }
    }

    /// The haversine of the central angle between the centre and `p`, computed as the SQL
    /// computes it.
    pub fn haversine(&self, p: GeoPoint) -> f64 {
        let parts = self.sql_parts();
        haversine_with(&parts, p)
    }

    /// Whether `p` is within the circle, boundary included: the definition of `within_km`.
    pub fn contains(&self, p: GeoPoint) -> bool {
        let parts = self.sql_parts();
        contains_with(&parts, p)
    }

    /// The great-circle distance from the centre to `p` in kilometres, for people to read
    /// (membership compares haversines and never uses it).
    pub fn distance_km(&self, p: GeoPoint) -> f64 {
        2.0 * EARTH_RADIUS_KM * self.haversine(p).clamp(0.0, 1.0).sqrt().asin()
    }
}

/// [`Circle::haversine`] with the circle's constants computed once.
pub fn haversine_with(c: &CircleSql, p: GeoPoint) -> f64 {
    let a = scaled(p.lat - c.lat, HALF_RAD_PER_DEG);
    let b = scaled(folded_lon(p.lon, c.lon), HALF_RAD_PER_DEG);
    let colat = scaled(90.0 - p.lat.abs(), RAD_PER_DEG);
    let (sa, sb, sc) = (
        sin_poly(a, a * a),
        sin_poly(b, b * b),
        sin_poly(colat, colat * colat),
    );
    sa * sa + c.cos_lat * sc * sb * sb
}

/// [`Circle::contains`] with the circle's constants computed once.
pub fn contains_with(c: &CircleSql, p: GeoPoint) -> bool {
    p.lat >= c.lat_min && p.lat <= c.lat_max && haversine_with(c, p) <= c.max_h
}

impl PartialEq for Circle {
    fn eq(&self, other: &Circle) -> bool {
        self.bits() == other.bits()
    }
}

impl Eq for Circle {}

impl Hash for Circle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}

impl Ord for Circle {
    fn cmp(&self, other: &Circle) -> Ordering {
        self.lat
            .total_cmp(&other.lat)
            .then(self.lon.total_cmp(&other.lon))
            .then(self.km.total_cmp(&other.km))
    }
}

impl PartialOrd for Circle {
    fn partial_cmp(&self, other: &Circle) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The textbook haversine distance with the platform's `sin`, `cos`, `asin`.
    fn textbook_km(a: GeoPoint, b: GeoPoint) -> f64 {
        let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
        let dp = (b.lat - a.lat).to_radians();
        let dl = (b.lon - a.lon).to_radians();
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.min(1.0).sqrt().asin()
    }

    fn arb_point() -> impl Strategy<Value = GeoPoint> {
        (-90.0..=90.0f64, -180.0..=180.0f64).prop_map(|(lat, lon)| GeoPoint { lat, lon })
    }

    #[test]
    fn the_polynomial_is_the_sine() {
        for i in 0..=10_000 {
            let x = -std::f64::consts::FRAC_PI_2 + std::f64::consts::PI * f64::from(i) / 1e4;
            assert!((sin(x) - x.sin()).abs() <= 4.0 * f64::EPSILON, "{x}");
        }
    }

    #[test]
    fn known_distances() {
        // Bengaluru to Mumbai, about 845 km.
        let blr = Circle::new(12.9716, 77.5946, 10.0).unwrap();
        let bom = GeoPoint::new(19.0760, 72.8777).unwrap();
        assert!((blr.distance_km(bom) - 845.0).abs() < 5.0);
        // A quarter of a meridian.
        let pole = GeoPoint::new(90.0, 0.0).unwrap();
        let quarter = std::f64::consts::FRAC_PI_2 * EARTH_RADIUS_KM;
        let equator = Circle::new(0.0, 0.0, 1.0).unwrap();
        assert!((equator.distance_km(pole) - quarter).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn distance_agrees_with_the_textbook_formula(c in arb_point(), p in arb_point()) {
            let circle = Circle::new(c.lat, c.lon, 1.0).unwrap();
            let ours = circle.distance_km(p);
            let theirs = textbook_km(c, p);
            // Within a micrometre as far as circles reach; asin amplifies rounding beyond,
            // next to the antipode.
            let tolerance = if theirs > MAX_RADIUS_KM { 1e-3 } else { 1e-9 };
            prop_assert!((ours - theirs).abs() <= tolerance, "{ours} vs {theirs}");
        }

        /// The latitude band never drops a member: with it and without it, the same points.
        #[test]
        fn the_band_keeps_every_member(
            c in arb_point(),
            km in prop_oneof![0.001..50.0f64, 0.001..MAX_RADIUS_KM],
            bearing in 0.0..360.0f64,
            shrink in 0.9..1.0000001f64,
        ) {
            let circle = Circle::new(c.lat, c.lon, km).unwrap();
            let parts = circle.sql_parts();
            // A point near the circle's edge, towards `bearing`.
            let d = km * shrink / EARTH_RADIUS_KM;
            let (p1, l1, t) = (c.lat.to_radians(), c.lon.to_radians(), bearing.to_radians());
            let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * t.cos()).asin();
            let l2 = l1 + (t.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
            let lon = (l2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
            let p = GeoPoint::new(p2.to_degrees().clamp(-90.0, 90.0), lon).unwrap();
            if haversine_with(&parts, p) <= parts.max_h {
                prop_assert!(contains_with(&parts, p));
            }
        }

        /// A smaller radius around the same centre is inside a larger one.
        #[test]
        fn smaller_radius_is_inside(c in arb_point(), a in 0.001..MAX_RADIUS_KM, b in 0.001..MAX_RADIUS_KM) {
            let (lo, hi) = (a.min(b), a.max(b));
            let small = Circle::new(c.lat, c.lon, lo).unwrap();
            let large = Circle::new(c.lat, c.lon, hi).unwrap();
            prop_assert!(small.inside(&large));
        }
    }

    #[test]
    fn out_of_range_circles_are_refused() {
        assert!(Circle::new(90.5, 0.0, 1.0).is_none());
        assert!(Circle::new(0.0, -180.5, 1.0).is_none());
        assert!(Circle::new(0.0, 0.0, 0.0).is_none());
        assert!(Circle::new(0.0, 0.0, MAX_RADIUS_KM + 1.0).is_none());
        assert!(Circle::new(f64::NAN, 0.0, 1.0).is_none());
        assert_eq!(
            Circle::new(-0.0, -0.0, 1.0).unwrap(),
            Circle::new(0.0, 0.0, 1.0).unwrap()
        );
    }
}
