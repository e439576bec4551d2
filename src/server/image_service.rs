//! The ImageService: pull, status, list, remove and filesystem usage of images.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::CriServer;
use super::errors::invalid_field;
use crate::cri::v1::image_service_server::ImageService;
use crate::cri::v1::*;
use crate::ids::now_nanos;
use crate::image::catalog::ImageRecord;
use crate::image::registry::Credentials;
use crate::telemetry::record_ids;
use crate::validate::checked;

/// The `image` string of an ImageSpec (`validate` made sure it is there).
fn image_of(spec: &Option<ImageSpec>) -> &str {
    spec.as_ref().map(|s| s.image.as_str()).unwrap_or_default()
}

impl CriServer {
    fn image_message(&self, image: &ImageRecord) -> Image {
        let (uid, username) = image.uid_or_username();
        Image {
            id: image.id.clone(),
            repo_tags: image.repo_tags.clone(),
            repo_digests: image.repo_digests.clone(),
            size: image.size,
            uid: uid.map(|value| Int64Value { value }),
            username,
            spec: Some(ImageSpec {
                image: image.id.clone(),
                ..Default::default()
            }),
            pinned: self.images().is_pinned(image),
        }
    }
}

/// What `crictl inspecti` shows under "info": where the image came from and what it holds.
fn verbose_info(image: &ImageRecord) -> HashMap<String, String> {
    let info = serde_json::json!({
        "id": image.id,
        "manifestDigest": image.manifest_digest,
        "mediaType": image.manifest_media_type,
        "platform": image.platform.to_string(),
        "size": image.size,
        "layers": image.layers,
        "config": image.config,
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}

cri_service! {
    impl ImageService for CriServer {
        async fn pull_image(
            &self,
            request: Request<PullImageRequest>,
        ) -> Result<Response<PullImageResponse>, Status> {
            let request = checked(request)?;
            let image = image_of(&request.image);
            record_ids("image", image);
            let credentials = match &request.auth {
                None => None,
                Some(a) => Credentials::from_cri(
                    &a.username,
                    &a.password,
                    &a.auth,
                    &a.server_address,
                    &a.identity_token,
                    &a.registry_token,
                )
                .map_err(|e| invalid_field("auth", e))?,
            };
            let record = self.images().pull(image, credentials).await?;
            Ok(Response::new(PullImageResponse { image_ref: record.id }))
        }

        async fn image_status(
            &self,
            request: Request<ImageStatusRequest>,
        ) -> Result<Response<ImageStatusResponse>, Status> {
            let request = checked(request)?;
            let image = image_of(&request.image);
            record_ids("image", image);
            let found = self.images().status(image).await?;
            let info = match (&found, request.verbose) {
                (Some(image), true) => verbose_info(image),
                _ => HashMap::new(),
            };
            Ok(Response::new(ImageStatusResponse {
                image: found.map(|i| self.image_message(&i)),
                info,
            }))
        }

        async fn list_images(
            &self,
            request: Request<ListImagesRequest>,
        ) -> Result<Response<ListImagesResponse>, Status> {
            let filter = checked(request)?
                .filter
                .and_then(|f| f.image)
                .map(|s| s.image)
                .filter(|i| !i.is_empty());
            let images = self.images().list(filter.as_deref()).await?;
            Ok(Response::new(ListImagesResponse {
                images: images.iter().map(|i| self.image_message(i)).collect(),
            }))
        }

        type StreamImagesStream = super::list_streams::ServerStream<StreamImagesResponse>;

        /// ListImages' answer in pages.
        async fn stream_images(
            &self,
            request: Request<StreamImagesRequest>,
        ) -> Result<Response<Self::StreamImagesStream>, Status> {
            let filter = checked(request)?.filter;
            let request = Request::new(ListImagesRequest { filter });
            let images = ImageService::list_images(self, request).await?.into_inner().images;
            Ok(Response::new(self.pages(images, |images| StreamImagesResponse { images })))
        }

        async fn remove_image(
            &self,
            request: Request<RemoveImageRequest>,
        ) -> Result<Response<RemoveImageResponse>, Status> {
            let request = checked(request)?;
            let image = image_of(&request.image);
            record_ids("image", image);
            self.images().remove(image).await?;
            Ok(Response::new(RemoveImageResponse {}))
        }

        async fn image_fs_info(
            &self,
            _request: Request<ImageFsInfoRequest>,
        ) -> Result<Response<ImageFsInfoResponse>, Status> {
            let usage = self.images().fs_usage().await?;
            let timestamp = now_nanos();
            let images = FilesystemUsage {
                timestamp,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: usage.mountpoint.display().to_string(),
                }),
                used_bytes: Some(UInt64Value { value: usage.bytes }),
                inodes_used: Some(UInt64Value { value: usage.inodes }),
            };
            // Container writable layers live on the same filesystem, under the same root.
            let containers = FilesystemUsage {
                used_bytes: Some(UInt64Value { value: 0 }),
                inodes_used: Some(UInt64Value { value: 0 }),
                ..images.clone()
            };
            Ok(Response::new(ImageFsInfoResponse {
                image_filesystems: vec![images],
                container_filesystems: vec![containers],
            }))
        }
    }
    pending {}
    pending_streams {}
}
