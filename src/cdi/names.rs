//! CDI device names: `vendor.com/class=name` (CDI's `pkg/parser` rules). Vendor and class
//! start with a letter, end with a letter or digit, and have letters, digits, `_`, `-`
//! and `.` between; a device name starts and ends with a letter or digit and may also
//! hold `:` between.

/// A fully-qualified name split in three; the message says which rule it breaks.
pub fn parse_qualified(name: &str) -> Result<(&str, &str, &str), String> {
    let (kind, device) = name.split_once('=').ok_or_else(|| {
        format!("{name:?} is not a qualified CDI device name (vendor.com/class=name)")
    })?;
    let (vendor, class) = kind.split_once('/').ok_or_else(|| {
        format!("{name:?} is not a qualified CDI device name (vendor.com/class=name)")
    })?;
    check_vendor_or_class(vendor).map_err(|e| format!("{name:?}: vendor {e}"))?;
    check_vendor_or_class(class).map_err(|e| format!("{name:?}: class {e}"))?;
    check_device(device).map_err(|e| format!("{name:?}: device name {e}"))?;
    Ok((vendor, class, device))
}

pub fn check_vendor_or_class(name: &str) -> Result<(), String> {
    check(
        name,
        |c| c.is_ascii_alphabetic(),
        "_-.",
        "start with a letter",
    )
}

pub fn check_device(name: &str) -> Result<(), String> {
    check(
        name,
        |c| c.is_ascii_alphanumeric(),
        "_-.:",
        "start with a letter or digit",
    )
}

fn check(
    name: &str,
    first_ok: fn(char) -> bool,
    middle: &str,
    first_rule: &str,
) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("is empty".into());
    };
    if !first_ok(first) {
        return Err(format!("{name:?} must {first_rule}"));
    }
    let last = name.chars().next_back().unwrap_or(first);
    if !last.is_ascii_alphanumeric() {
        return Err(format!("{name:?} must end with a letter or digit"));
    }
    match name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !middle.contains(*c))
    {
        Some(bad) => Err(format!(
            "{name:?} has {bad:?}, not a letter, digit or one of {middle}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert_eq!(
            parse_qualified("nvidia.com/gpu=all").unwrap(),
            ("nvidia.com", "gpu", "all")
        );
        assert_eq!(
            parse_qualified("vendor.com/class=GPU-0b6f:1").unwrap().2,
            "GPU-0b6f:1"
        );
        assert!(parse_qualified("vendor.com/class=0").is_ok());
        for bad in [
            "",
            "gpu0",
            "/dev/null",
            "vendor.com=x",
            "vendor.com/=x",
            "vendor.com/class=",
            "1vendor.com/class=x",
            "vendor.com/class=-x",
            "vendor.com/class=x-",
            "vendor.com/cl ass=x",
            "vendor.com/class=a/b",
            "vendor.com/a/b=x",
        ] {
            assert!(parse_qualified(bad).is_err(), "{bad:?} accepted");
        }
    }
}
