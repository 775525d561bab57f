//! Element-wise math functions (`abs`, `ceil`, `exp`, `ln`, trigonometry,
//! `sgn`, `deg`, `rad`, ...) and the scalar arithmetic of binary operators.

/// The element-wise function called `name`, if there is one.
pub fn simple(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        "sgn" => sgn,
        _ => return None,
    })
}

fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// `round(v, to_nearest)`: rounds half up to a multiple of `to_nearest`.
pub fn round(v: f64, to_nearest: f64) -> f64 {
    let inv = 1.0 / to_nearest;
    (v * inv + 0.5).floor() / inv
}

/// Go's `math.Mod`: the remainder with the sign of `x` (Rust's `%`).
pub fn fmod(x: f64, y: f64) -> f64 {
    x % y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, f64, f64)] = &[
            ("abs", -2.0, 2.0),
            ("ceil", 1.2, 2.0),
            ("floor", -1.2, -2.0),
            ("sgn", -3.0, -1.0),
            ("sgn", 0.0, 0.0),
            ("deg", std::f64::consts::PI, 180.0),
            ("rad", 180.0, std::f64::consts::PI),
            ("log2", 8.0, 3.0),
        ];
        for (name, x, want) in cases {
            assert_eq!(simple(name).unwrap()(*x), *want, "{name}({x})");
        }
        assert!(simple("rate").is_none());
        assert_eq!(round(2.5, 1.0), 3.0);
        assert_eq!(round(-2.5, 1.0), -2.0);
        assert_eq!(round(12.34, 0.1), 12.3);
        assert_eq!(fmod(-7.0, 3.0), -1.0);
    }
}
