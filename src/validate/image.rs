//! The ImageService's requests.

use super::configs::{Use, pod_config};
use super::rules::{annotations, max_len, plain, shown};
use super::{Invalid, Validate, invalid};
use crate::cri::v1::*;

/// Longer than any reference a registry serves (names are at most 255, plus tag or digest).
const MAX_REFERENCE: usize = 4096;

/// A required ImageSpec under `p`: a one-line reference or ID.
pub(super) fn image_spec(p: &str, spec: &ImageSpec) -> Result<(), Invalid> {
    let field = format!("{p}.image");
    if spec.image.trim().is_empty() {
        return Err(invalid(field, "an image reference or ID is required"));
    }
    plain(&field, &spec.image)?;
    max_len(&field, &spec.image, MAX_REFERENCE)?;
    for (name, value) in [
        ("user_specified_image", &spec.user_specified_image),
        ("image_ref", &spec.image_ref),
    ] {
        let field = format!("{p}.{name}");
        plain(&field, value)?;
        max_len(&field, value, MAX_REFERENCE)?;
    }
    if !spec.runtime_handler.is_empty() {
        return Err(invalid(
            format!("{p}.runtime_handler"),
            format!(
                "unknown runtime handler {} (ferrocri has only the default, \"\")",
                shown(&spec.runtime_handler)
            ),
        ));
    }
    annotations(&format!("{p}.annotations"), &spec.annotations)
}

/// An ImageSpec that must be there; a missing one is reported as its missing `image`.
pub(super) fn required_spec(p: &str, spec: Option<&ImageSpec>) -> Result<(), Invalid> {
    match spec {
        Some(spec) => image_spec(p, spec),
        None => Err(invalid(
            format!("{p}.image"),
            "an image reference or ID is required",
        )),
    }
}

impl Validate for PullImageRequest {
    fn validate(&self) -> Result<(), Invalid> {
        required_spec("image", self.image.as_ref())?;
        if let Some(a) = &self.auth {
            for (name, value) in [
                ("username", &a.username),
                ("password", &a.password),
                ("auth", &a.auth),
                ("server_address", &a.server_address),
                ("identity_token", &a.identity_token),
                ("registry_token", &a.registry_token),
            ] {
                // Credentials go into HTTP headers: one line each.
                plain(&format!("auth.{name}"), value)?;
            }
        }
        if let Some(pod) = &self.sandbox_config {
            pod_config("sandbox_config", pod, Use::Copy)?;
        }
        Ok(())
    }
}

impl Validate for ImageStatusRequest {
    fn validate(&self) -> Result<(), Invalid> {
        required_spec("image", self.image.as_ref())
    }
}

impl Validate for RemoveImageRequest {
    fn validate(&self) -> Result<(), Invalid> {
        required_spec("image", self.image.as_ref())
    }
}

fn filter(f: Option<&ImageFilter>) -> Result<(), Invalid> {
    let Some(image) = f.and_then(|f| f.image.as_ref()) else {
        return Ok(());
    };
    plain("filter.image.image", &image.image)?;
    max_len("filter.image.image", &image.image, MAX_REFERENCE)
}

impl Validate for ListImagesRequest {
    fn validate(&self) -> Result<(), Invalid> {
        filter(self.filter.as_ref())
    }
}

impl Validate for StreamImagesRequest {
    fn validate(&self) -> Result<(), Invalid> {
        filter(self.filter.as_ref())
    }
}

impl Validate for ImageFsInfoRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
