//! The filters of the four list RPCs (ListPodSandbox, ListPodSandboxStats, ListContainers,
//! ListContainerStats) in one place: an ID prefix, a pod ID prefix, a CRI state and a label
//! selector, each left empty to keep everything.

use std::collections::HashMap;

use crate::container::record::ContainerRecord;
use crate::cri::v1::{
    ContainerFilter, ContainerStatsFilter, PodSandboxFilter, PodSandboxStatsFilter,
};
use crate::sandbox::record::SandboxRecord;

/// What a list request keeps.
#[derive(Debug, Default)]
pub(super) struct ListFilter<'a> {
    /// A prefix of the item's ID (kubelet and crictl send truncated IDs).
    id: &'a str,
    /// A prefix of the ID of the item's pod (containers only).
    pod_id: &'a str,
    /// The item's CRI state, as the request's enum value.
    state: Option<i32>,
    /// Labels the item must carry, each with the same value.
    labels: Option<&'a HashMap<String, String>>,
}

/// What a filter looks at in a listed record.
pub(super) trait Listed {
    fn id(&self) -> &str;
    /// The ID of its pod (a pod's own ID for a pod).
    fn pod_id(&self) -> &str;
    /// Its CRI state as the enum value; only asked when the filter names a state.
    fn cri_state(&self) -> i32;
    fn labels(&self) -> &HashMap<String, String>;
}

impl ListFilter<'_> {
    pub(super) fn keeps(&self, item: &impl Listed) -> bool {
        item.id().starts_with(self.id)
            && item.pod_id().starts_with(self.pod_id)
            && self.state.is_none_or(|state| state == item.cri_state())
            && self
                .labels
                .is_none_or(|selector| labels_match(item.labels(), selector))
    }
}

/// Every selector label must be present with the same value.
fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl<'a> From<&'a PodSandboxFilter> for ListFilter<'a> {
    fn from(f: &'a PodSandboxFilter) -> Self {
        ListFilter {
            id: &f.id,
            state: f.state.as_ref().map(|s| s.state),
            labels: Some(&f.label_selector),
            ..ListFilter::default()
        }
    }
}

impl<'a> From<&'a PodSandboxStatsFilter> for ListFilter<'a> {
    fn from(f: &'a PodSandboxStatsFilter) -> Self {
        ListFilter {
            id: &f.id,
            labels: Some(&f.label_selector),
            ..ListFilter::default()
        }
    }
}

impl<'a> From<&'a ContainerFilter> for ListFilter<'a> {
    fn from(f: &'a ContainerFilter) -> Self {
        ListFilter {
            id: &f.id,
            pod_id: &f.pod_sandbox_id,
            state: f.state.as_ref().map(|s| s.state),
            labels: Some(&f.label_selector),
        }
    }
}

impl<'a> From<&'a ContainerStatsFilter> for ListFilter<'a> {
    fn from(f: &'a ContainerStatsFilter) -> Self {
        ListFilter {
            id: &f.id,
            pod_id: &f.pod_sandbox_id,
            labels: Some(&f.label_selector),
            ..ListFilter::default()
        }
    }
}

impl Listed for SandboxRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn pod_id(&self) -> &str {
        &self.id
    }
    fn cri_state(&self) -> i32 {
        super::sandbox::cri_state(self) as i32
    }
    fn labels(&self) -> &HashMap<String, String> {
        &self.config.0.labels
    }
}

impl Listed for ContainerRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn pod_id(&self) -> &str {
        &self.sandbox_id
    }
    fn cri_state(&self) -> i32 {
        crate::container::status::cri_state(self) as i32
    }
    fn labels(&self) -> &HashMap<String, String> {
        &self.config.0.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1::{ContainerState, ContainerStateValue, PodSandboxStateValue};

    /// A record as the filter sees it, without a store.
    struct Item {
        id: &'static str,
        pod: &'static str,
        state: i32,
        labels: HashMap<String, String>,
    }

    impl Listed for Item {
        fn id(&self) -> &str {
            self.id
        }
        fn pod_id(&self) -> &str {
            self.pod
        }
        fn cri_state(&self) -> i32 {
            self.state
        }
        fn labels(&self) -> &HashMap<String, String> {
            &self.labels
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn items() -> Vec<Item> {
        let running = ContainerState::ContainerRunning as i32;
        let exited = ContainerState::ContainerExited as i32;
        vec![
            Item {
                id: "abc123",
                pod: "pod1",
                state: running,
                labels: labels(&[("app", "web"), ("tier", "front")]),
            },
            Item {
                id: "abd456",
                pod: "pod2",
                state: exited,
                labels: labels(&[("app", "web")]),
            },
            Item {
                id: "xyz789",
                pod: "pod1",
                state: running,
                labels: labels(&[("app", "db")]),
            },
        ]
    }

    fn kept(filter: ListFilter) -> Vec<&'static str> {
        items()
            .iter()
            .filter(|i| filter.keeps(*i))
            .map(|i| i.id)
            .collect()
    }

    #[test]
    fn an_empty_filter_keeps_everything() {
        assert_eq!(kept(ListFilter::default()), ["abc123", "abd456", "xyz789"]);
        let empty = ContainerFilter::default();
        assert_eq!(kept((&empty).into()), ["abc123", "abd456", "xyz789"]);
    }

    #[test]
    fn container_filters_combine_prefixes_state_and_labels() {
        let by_prefix = ContainerFilter {
            id: "ab".into(),
            ..Default::default()
        };
        assert_eq!(kept((&by_prefix).into()), ["abc123", "abd456"]);
        let by_pod = ContainerFilter {
            pod_sandbox_id: "pod1".into(),
            ..Default::default()
        };
        assert_eq!(kept((&by_pod).into()), ["abc123", "xyz789"]);
        let running_web = ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            label_selector: labels(&[("app", "web")]),
            ..Default::default()
        };
        assert_eq!(kept((&running_web).into()), ["abc123"]);
        let no_such_label_value = ContainerStatsFilter {
            label_selector: labels(&[("app", "cache")]),
            ..Default::default()
        };
        assert!(kept((&no_such_label_value).into()).is_empty());
    }

    #[test]
    fn pod_filters_have_no_pod_prefix_and_stats_filters_no_state() {
        // The filter compares the state's number; these items carry container states.
        let pods = PodSandboxFilter {
            id: "x".into(),
            state: Some(PodSandboxStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        assert_eq!(kept((&pods).into()), ["xyz789"]);
        let stats = PodSandboxStatsFilter {
            id: "a".into(),
            label_selector: labels(&[("tier", "front")]),
        };
        assert_eq!(kept((&stats).into()), ["abc123"]);
    }
}
