use super::*;
use crate::etcd::{AssignmentRecord, NodeReport, StoredAssignment};
use crate::model::{AppDemand, Assignment, ContainerTemplate, ReplicaId, StackMember};
use chrono::Utc;

fn member(app: &str, service: &str, ports: &[u16]) -> AppDemand {
    AppDemand {
        app: format!("{app}.{service}"),
        replicas: 1,
        container: Some(ContainerTemplate {
            stack: Some(StackMember {
                app: app.into(),
                service: service.into(),
                ports: ports.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn assigned(node: &str, app: &str, index: u32, epoch: u64) -> StoredAssignment {
    StoredAssignment {
        record: AssignmentRecord {
            assignment: Assignment {
                replica: ReplicaId {
                    app: app.into(),
                    index,
                },
                node: node.into(),
                epoch,
            },
            assigned_at: Utc::now(),
        },
        revision: 1,
    }
}

fn report(node: &str, app: &str, state: &str, epoch: u64, ports: &[(u16, u16)]) -> NodeReport {
    NodeReport {
        node: node.into(),
        replica: ReplicaId {
            app: app.into(),
            index: 0,
        },
        report: ReplicaReport {
            state: state.into(),
            detail: String::new(),
            epoch,
            updated_at: Utc::now(),
            container: None,
            host_port: None,
            address: Some(format!("127.0.0.{}", &node[1..])),
            revision: Some(1),
            unreachable: None,
            ports: ports.iter().copied().collect(),
        },
    }
}

#[test]
fn endpoints_follow_stacks_on_the_node_and_backends_only_healthy_current_replicas() {
    let snapshot = RoutingSnapshot {
        revision: 9,
        demands: vec![
            member("shop", "web", &[80]),
            member("shop", "db", &[5432]),
            member("shop", "worker", &[]),
            member("blog", "web", &[8080]),
        ],
        assignments: vec![
            assigned("n2", "shop.web", 0, 1),
            assigned("n3", "shop.db", 0, 4),
            assigned("n3", "blog.web", 0, 4),
        ],
        reports: vec![
            report("n2", "shop.web", "running", 1, &[(80, 40001)]),
            report("n3", "shop.db", "healthy", 4, &[(5432, 40002)]),
            // A report of an earlier epoch of n3 does not count.
            report("n3", "blog.web", "healthy", 3, &[(8080, 40003)]),
        ],
    };
    let on_n2 = plan(&snapshot, "n2");
    // Every service of the stack with ports gets an endpoint on n2; the
    // other stack none.
    assert_eq!(
        on_n2.endpoints.keys().cloned().collect::<Vec<_>>(),
        [
            ("shop".to_string(), "db".to_string()),
            ("shop".to_string(), "web".to_string())
        ]
    );
    assert_eq!(
        on_n2.backends.get(&("shop".into(), "db".into(), 5432)),
        Some(&vec!["127.0.0.3:40002".parse().unwrap()])
    );
    assert!(!on_n2
        .backends
        .contains_key(&("shop".into(), "web".into(), 80)));
    assert!(!on_n2
        .backends
        .contains_key(&("blog".into(), "web".into(), 8080)));
    let on_n3 = plan(&snapshot, "n3");
    assert_eq!(on_n3.endpoints.len(), 3);
    assert!(plan(&snapshot, "n9").endpoints.is_empty());
}
