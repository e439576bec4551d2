//! gRPC wiring only: the RuntimeService and ImageService trait implementations decode and
//! validate requests, call the domain modules, and turn their errors into gRPC codes in one
//! place (`errors.rs`). One file per group of RPCs.

/// Implements a CRI service trait: the RPCs that work are written out as items; every other
/// RPC answers Unimplemented with its name and the reason. (The trait is `async_trait`, so the
/// generated methods must be inside the attributed impl block, hence one macro for the block.)
macro_rules! cri_service {
    (
        impl $trait:ident for $ty:ident {
            $($item:item)*
        }
        pending {
            $($method:ident($req:ty) -> $resp:ty = $rpc:literal, $why:expr;)*
        }
        pending_streams {
            $($stream:ident, $smethod:ident($sreq:ty) -> $sresp:ty = $srpc:literal, $swhy:expr;)*
        }
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($item)*
            $(
                async fn $method(
                    &self,
                    _request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    Err($crate::server::errors::pending($rpc, $why))
                }
            )*
            $(
                type $stream = futures::stream::BoxStream<'static, Result<$sresp, tonic::Status>>;
                async fn $smethod(
                    &self,
                    _request: tonic::Request<$sreq>,
                ) -> Result<tonic::Response<Self::$stream>, tonic::Status> {
                    Err($crate::server::errors::pending($srpc, $swhy))
                }
            )*
        }
    };
}

mod authority;
mod container;
mod deadline;
mod errors;
mod filters;
mod hpack;
mod image_service;
mod limits;
mod list_streams;
mod metrics;
mod runtime_info;
mod runtime_service;
mod sandbox;
mod streaming;

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::StreamExt;

use crate::config::Config;
use crate::container::service::Containers;
use crate::cri::v1::image_service_server::ImageServiceServer;
use crate::cri::v1::runtime_service_server::RuntimeServiceServer;
use crate::image::service::Images;
use crate::sandbox::service::Sandboxes;
use crate::store::Store;
use crate::streaming::Streaming;

pub use limits::MAX_REQUEST_BYTES;

/// Everything the RPC handlers share. Cheap to clone.
#[derive(Clone)]
pub struct CriServer {
    inner: Arc<Shared>,
}

struct Shared {
    config: Config,
    store: Store,
    images: Arc<Images>,
    sandboxes: Arc<Sandboxes>,
    containers: Arc<Containers>,
    streaming: Arc<Streaming>,
    /// Operations on a pod and its containers together, under the pod's lock.
    pods: crate::container::pods::Pods,
}

impl CriServer {
    pub fn new(
        config: Config,
        store: Store,
        images: Arc<Images>,
        sandboxes: Arc<Sandboxes>,
        containers: Arc<Containers>,
        streaming: Arc<Streaming>,
    ) -> CriServer {
        CriServer {
            inner: Arc::new(Shared {
                config,
                store,
                images,
                pods: crate::container::pods::Pods::new(sandboxes.clone(), containers.clone()),
                sandboxes,
                containers,
                streaming,
            }),
        }
    }

    fn containers(&self) -> &Arc<Containers> {
        &self.inner.containers
    }

    fn pods(&self) -> &crate::container::pods::Pods {
        &self.inner.pods
    }

    fn streaming(&self) -> &Arc<Streaming> {
        &self.inner.streaming
    }

    fn sandboxes(&self) -> &Arc<Sandboxes> {
        &self.inner.sandboxes
    }

    fn images(&self) -> &Arc<Images> {
        &self.inner.images
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Serves both CRI services on `listener` until `shutdown` completes, then lets in-flight
    /// RPCs finish.
    pub async fn serve(
        self,
        listener: tokio::net::UnixListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let runtime = RuntimeServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX);
        let image = ImageServiceServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX);
        tonic::transport::Server::builder()
            // kubelet keeps one connection open for its lifetime; keepalives find dead peers.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(crate::telemetry::RpcSpanLayer)
            .layer(deadline::DeadlineExceededLayer)
            .layer(limits::InvalidArgumentForOversizeLayer)
            .add_service(runtime)
            .add_service(image)
            .serve_with_incoming_shutdown(
                // Every client's authority is accepted, whatever it derived from the path.
                tokio_stream::wrappers::UnixListenerStream::new(listener)
                    .map(|conn| conn.map(authority::AnyAuthority::new)),
                shutdown,
            )
            .await
    }
}
