//! The ImageService.

use super::CriServer;
use crate::cri::v1::image_service_server::ImageService;
use crate::cri::v1::*;

const IMAGES: &str = "image management is not supported yet";
const LIST_STREAMING: &str = "use ListImages (kubelet falls back to it)";

cri_service! {
    impl ImageService for CriServer {}
    pending {
        list_images(ListImagesRequest) -> ListImagesResponse = "ListImages", IMAGES;
        image_status(ImageStatusRequest) -> ImageStatusResponse = "ImageStatus", IMAGES;
        pull_image(PullImageRequest) -> PullImageResponse = "PullImage", IMAGES;
        remove_image(RemoveImageRequest) -> RemoveImageResponse = "RemoveImage", IMAGES;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse = "ImageFsInfo", IMAGES;
    }
    pending_streams {
        StreamImagesStream, stream_images(StreamImagesRequest) -> StreamImagesResponse = "StreamImages", LIST_STREAMING;
    }
}
