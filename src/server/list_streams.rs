//! The Stream* list RPCs: the unary list's answer, cut into pages of at most
//! `cri.stream_page_size` items and [`MAX_PAGE_BYTES`], so that a node with thousands of
//! containers never reaches a client's message size limit. An empty list is a stream with no
//! message (each message carries at least one item). GetContainerEvents is here too: the one
//! other server stream.

use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::Status;

use super::{CriServer, errors};
use crate::container::events::{Ended, Subscription};
use crate::cri::v1::ContainerEventResponse;

/// What a server-streaming RPC answers.
pub type ServerStream<T> = BoxStream<'static, Result<T, Status>>;

/// Encoded bytes per page (kubelet accepts 16 MiB per message; well below it).
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// Cuts `items` into pages of at most `max_items` items and about `max_bytes` encoded bytes
/// (a single larger item gets a page of its own).
pub fn paginate<T: prost::Message>(
    items: Vec<T>,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut bytes = 0;
    for item in items {
        // The item, its field tag and its length prefix.
        let size = item.encoded_len() + 1 + prost::length_delimiter_len(item.encoded_len());
        if !page.is_empty() && (page.len() >= max_items || bytes + size > max_bytes) {
            pages.push(std::mem::take(&mut page));
            bytes = 0;
        }
        bytes += size;
        page.push(item);
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}

impl CriServer {
    /// A stream of `wrap`ped pages of `items`.
    pub(super) fn pages<T, R>(
        &self,
        items: Vec<T>,
        wrap: impl Fn(Vec<T>) -> R + Send + 'static,
    ) -> ServerStream<R>
    where
        T: prost::Message + Send + 'static,
        R: Send + 'static,
    {
        let pages = paginate(items, self.config().cri.stream_page_size, MAX_PAGE_BYTES);
        futures::stream::iter(pages.into_iter().map(move |page| Ok(wrap(page)))).boxed()
    }

    /// GetContainerEvents: every event from now on, until the subscriber falls behind (then
    /// RESOURCE_EXHAUSTED) or the daemon shuts down (UNAVAILABLE).
    pub(super) fn container_events(&self) -> Result<ServerStream<ContainerEventResponse>, Status> {
        let subscription = self
            .containers()
            .subscribe_events()
            .ok_or_else(errors::shutting_down)?;
        let stream = futures::stream::unfold(Some(subscription), next_event);
        Ok(stream.boxed())
    }
}

async fn next_event(
    subscription: Option<Subscription>,
) -> Option<(Result<ContainerEventResponse, Status>, Option<Subscription>)> {
    let mut subscription = subscription?;
    match subscription.next().await {
        Ok(event) => Some((Ok(event), Some(subscription))),
        Err(Ended::Lagged(lost)) => {
            tracing::warn!(
                lost,
                "a container event subscriber fell behind; dropping it"
            );
            Some((Err(errors::events_lost(lost)), None))
        }
        Err(Ended::Closed) => Some((Err(errors::shutting_down()), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1::Container;

    fn container(id: &str, label_bytes: usize) -> Container {
        Container {
            id: id.into(),
            labels: [("l".to_owned(), "x".repeat(label_bytes))].into(),
            ..Default::default()
        }
    }

    fn ids(pages: &[Vec<Container>]) -> Vec<Vec<&str>> {
        pages
            .iter()
            .map(|p| p.iter().map(|c| c.id.as_str()).collect())
            .collect()
    }

    #[test]
    fn pages_keep_the_order_and_both_limits() {
        let items: Vec<Container> = (0..7).map(|n| container(&n.to_string(), 10)).collect();
        assert_eq!(
            ids(&paginate(items.clone(), 3, MAX_PAGE_BYTES)),
            [vec!["0", "1", "2"], vec!["3", "4", "5"], vec!["6"]]
        );
        assert!(paginate(Vec::<Container>::new(), 3, MAX_PAGE_BYTES).is_empty());

        // Byte budget: each item is a bit over 1000 bytes, so two fit in 2500.
        let big: Vec<Container> = (0..5).map(|n| container(&n.to_string(), 1000)).collect();
        let pages = paginate(big, 100, 2500);
        assert_eq!(ids(&pages), [vec!["0", "1"], vec!["2", "3"], vec!["4"]]);
        for page in &pages {
            let response = crate::cri::v1::ListContainersResponse {
                containers: page.clone(),
            };
            assert!(prost::Message::encoded_len(&response) <= 2500);
        }
        // An item larger than the budget still goes, alone.
        let pages = paginate(vec![container("a", 3000), container("b", 1)], 100, 2500);
        assert_eq!(ids(&pages), [vec!["a"], vec!["b"]]);
    }
}
