//! AlterConfigs and IncrementalAlterConfigs: changing a topic's settings while it runs.
//!
//! Both end in [`Broker::alter_topic_configs`], which replaces a topic's overrides as a whole;
//! what differs is how the new overrides are worked out. AlterConfigs (the older API) gives
//! the complete set: a setting it leaves out goes back to the broker's default.
//! IncrementalAlterConfigs gives operations on the current set: SET, DELETE, and APPEND and
//! SUBTRACT for list-valued settings. Broker settings are read at start and are not changed
//! here: each such resource gets INVALID_CONFIG and a message saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{topic_error_code, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::server::broker::{Broker, Topic};
use crate::server::topic_config::describe_topic;

/// IncrementalAlterConfigs operations, by Kafka's numbers.
pub const OPERATION_SET: i8 = 0;
pub const OPERATION_DELETE: i8 = 1;
pub const OPERATION_APPEND: i8 = 2;
pub const OPERATION_SUBTRACT: i8 = 3;

/// Topic settings whose values are comma-separated lists: the only ones APPEND and SUBTRACT
/// apply to.
const LIST_SETTINGS: &[&str] = &["cleanup.policy"];

/// Why a resource's change was refused: the error code and the message for the client.
type Refusal = (ResponseError, String);

/// One IncrementalAlterConfigs operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    pub kind: i8,
    pub value: Option<String>,
}

/// The overrides that result from applying `operations` to `current`, whose effective values
/// (overrides and defaults) are `effective`. Unknown names and bad values are left for the
/// topic's own checks; refused here are what no setting could accept: one name twice, an
/// unknown operation, SET without a value, APPEND or SUBTRACT on a setting that is no list.
pub fn apply_operations(
    current: &BTreeMap<String, String>,
    effective: &BTreeMap<String, String>,
    operations: &[Operation],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut seen = BTreeSet::new();
    let mut altered = current.clone();
    for operation in operations {
        let name = &operation.name;
        if !seen.insert(name.as_str()) {
            return Err((
                ResponseError::InvalidRequest,
                format!("setting {name} appears more than once"),
            ));
        }
        match operation.kind {
            OPERATION_SET => {
                let Some(value) = &operation.value else {
                    return Err((
                        ResponseError::InvalidRequest,
                        format!("SET of {name} has no value"),
                    ));
                };
                altered.insert(name.clone(), value.clone());
            }
            OPERATION_DELETE => {
                altered.remove(name);
            }
            OPERATION_APPEND | OPERATION_SUBTRACT => {
                if !LIST_SETTINGS.contains(&name.as_str()) {
                    return Err((
                        ResponseError::InvalidConfig,
                        format!("{name} is not a list: APPEND and SUBTRACT apply only to {LIST_SETTINGS:?}"),
                    ));
                }
                let mut items: Vec<String> = list_items(
                    current
                        .get(name)
                        .or_else(|| effective.get(name))
                        .map_or("", String::as_str),
                );
                let given = list_items(operation.value.as_deref().unwrap_or(""));
                if operation.kind == OPERATION_APPEND {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                altered.insert(name.clone(), items.join(","));
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("unknown operation {other} on {name}"),
                ))
            }
        }
    }
    Ok(altered)
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// The overrides AlterConfigs asks for: exactly the settings it lists.
pub fn complete_set(
    settings: &[(String, Option<String>)],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut configs = BTreeMap::new();
    for (name, value) in settings {
        let Some(value) = value else {
            return Err((
                ResponseError::InvalidRequest,
                format!("{name} has no value"),
            ));
        };
        if configs.insert(name.clone(), value.clone()).is_some() {
            return Err((
                ResponseError::InvalidRequest,
                format!("setting {name} appears more than once"),
            ));
        }
    }
    Ok(configs)
}

/// The refusal for a resource that is not a topic this API can change.
fn not_a_topic(resource_type: i8) -> Refusal {
    if resource_type == RESOURCE_BROKER {
        (
            ResponseError::InvalidConfig,
            "broker settings are read at start: change them in the config file or flags and restart the broker".to_string(),
        )
    } else {
        (
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} has no settings to change here (topics only)"),
        )
    }
}

/// Resources named more than once in one request: Kafka refuses each of them.
fn duplicated(resources: impl Iterator<Item = (i8, String)>) -> BTreeSet<(i8, String)> {
    let mut seen = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for resource in resources {
        if !seen.insert(resource.clone()) {
            twice.insert(resource);
        }
    }
    twice
}

fn duplicate_refusal() -> Refusal {
    (
        ResponseError::InvalidRequest,
        "the resource appears more than once in the request".to_string(),
    )
}

/// One resource of a request, reduced to what both APIs share.
struct Resource {
    resource_type: i8,
    name: StrBytes,
}

/// Serves each resource in request order: refuses duplicates and resources that are not
/// topics, works out the topic's new overrides with `new_configs` and applies them. Returns
/// each resource's refusal, if any.
async fn serve<R>(
    broker: &Arc<Broker>,
    api: &str,
    resources: Vec<R>,
    describe: impl Fn(&R) -> Resource,
    new_configs: impl Fn(&R, &Topic) -> Result<BTreeMap<String, String>, Refusal>,
    validate_only: bool,
) -> Vec<(Resource, Option<Refusal>)> {
    let twice = duplicated(resources.iter().map(|resource| {
        let described = describe(resource);
        (described.resource_type, described.name.to_string())
    }));
    let mut outcomes = Vec::with_capacity(resources.len());
    for resource in &resources {
        let described = describe(resource);
        let name = described.name.to_string();
        let outcome = if twice.contains(&(described.resource_type, name.clone())) {
            Err(duplicate_refusal())
        } else if described.resource_type != RESOURCE_TOPIC {
            Err(not_a_topic(described.resource_type))
        } else {
            match broker.topic(&name) {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("unknown topic `{name}`"),
                )),
                Some(topic) => match new_configs(resource, &topic) {
                    Ok(configs) => broker
                        .alter_topic_configs(&name, configs, validate_only)
                        .await
                        .map_err(|error| (topic_error_code(&error), error.to_string())),
                    Err(refusal) => Err(refusal),
                },
            }
        };
        if let Err(refusal) = &outcome {
            tracing::info!(api, resource = %name, error = ?refusal.0, message = %refusal.1,
                "settings change refused");
        }
        outcomes.push((described, outcome.err()));
    }
    outcomes
}

pub async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let outcomes = serve(
        broker,
        "IncrementalAlterConfigs",
        request.resources,
        |resource| Resource {
            resource_type: resource.resource_type,
            name: resource.resource_name.clone(),
        },
        |resource, topic| {
            let operations: Vec<Operation> = resource
                .configs
                .iter()
                .map(|config| Operation {
                    name: config.name.to_string(),
                    kind: config.config_operation,
                    value: config.value.as_ref().map(ToString::to_string),
                })
                .collect();
            let effective = describe_topic(&topic.log_config, &topic.configs, topic.internal)
                .into_iter()
                .map(|(name, value, _)| (name.to_string(), value))
                .collect();
            apply_operations(&topic.configs, &effective, &operations)
        },
        request.validate_only,
    )
    .await;
    let responses = outcomes
        .into_iter()
        .map(|(resource, refusal)| {
            let response =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.name);
            match refusal {
                None => response,
                Some((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub async fn alter_configs(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let outcomes = serve(
        broker,
        "AlterConfigs",
        request.resources,
        |resource| Resource {
            resource_type: resource.resource_type,
            name: resource.resource_name.clone(),
        },
        |resource, _topic| {
            let settings: Vec<(String, Option<String>)> = resource
                .configs
                .iter()
                .map(|config| {
                    (
                        config.name.to_string(),
                        config.value.as_ref().map(ToString::to_string),
                    )
                })
                .collect();
            complete_set(&settings)
        },
        request.validate_only,
    )
    .await;
    let responses = outcomes
        .into_iter()
        .map(|(resource, refusal)| {
            let response = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.name);
            match refusal {
                None => response,
                Some((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn operation(name: &str, kind: i8, value: Option<&str>) -> Operation {
        Operation {
            name: name.to_string(),
            kind,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn set_and_delete_change_only_the_named_overrides() {
        let current = settings(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]);
        let altered = apply_operations(
            &current,
            &current,
            &[
                operation("retention.ms", OPERATION_DELETE, None),
                operation("max.message.bytes", OPERATION_SET, Some("2048")),
                operation("segment.ms", OPERATION_DELETE, None),
            ],
        )
        .unwrap();
        assert_eq!(
            altered,
            settings(&[("max.message.bytes", "2048"), ("segment.bytes", "1048576")])
        );
    }

    #[test]
    fn append_and_subtract_work_on_lists_from_the_effective_value() {
        let effective = settings(&[("cleanup.policy", "delete")]);
        let appended = apply_operations(
            &BTreeMap::new(),
            &effective,
            &[operation(
                "cleanup.policy",
                OPERATION_APPEND,
                Some("delete,compact"),
            )],
        )
        .unwrap();
        assert_eq!(appended, settings(&[("cleanup.policy", "delete,compact")]));
        let subtracted = apply_operations(
            &appended,
            &effective,
            &[operation(
                "cleanup.policy",
                OPERATION_SUBTRACT,
                Some("compact"),
            )],
        )
        .unwrap();
        assert_eq!(subtracted, settings(&[("cleanup.policy", "delete")]));
    }

    #[test]
    fn refuses_what_no_setting_accepts() {
        let none = BTreeMap::new();
        for (operations, code) in [
            (
                vec![
                    operation("retention.ms", OPERATION_SET, Some("1")),
                    operation("retention.ms", OPERATION_DELETE, None),
                ],
                ResponseError::InvalidRequest,
            ),
            (
                vec![operation("retention.ms", OPERATION_SET, None)],
                ResponseError::InvalidRequest,
            ),
            (
                vec![operation("retention.ms", 9, Some("1"))],
                ResponseError::InvalidRequest,
            ),
            (
                vec![operation("retention.ms", OPERATION_APPEND, Some("1"))],
                ResponseError::InvalidConfig,
            ),
        ] {
            let refused = apply_operations(&none, &none, &operations).unwrap_err();
            assert_eq!(refused.0, code, "{operations:?}: {}", refused.1);
        }
    }

    #[test]
    fn a_complete_set_is_exactly_what_it_lists() {
        let listed = vec![
            ("retention.ms".to_string(), Some("5".to_string())),
            ("segment.ms".to_string(), Some("6".to_string())),
        ];
        assert_eq!(
            complete_set(&listed).unwrap(),
            settings(&[("retention.ms", "5"), ("segment.ms", "6")])
        );
        assert_eq!(complete_set(&[]).unwrap(), BTreeMap::new());
        let twice = vec![
            ("retention.ms".to_string(), Some("5".to_string())),
            ("retention.ms".to_string(), Some("6".to_string())),
        ];
        assert_eq!(
            complete_set(&twice).unwrap_err().0,
            ResponseError::InvalidRequest
        );
        let null = vec![("retention.ms".to_string(), None)];
        assert_eq!(
            complete_set(&null).unwrap_err().0,
            ResponseError::InvalidRequest
        );
    }

    #[test]
    fn a_resource_named_twice_is_found() {
        let twice = duplicated(
            [
                (RESOURCE_TOPIC, "a".to_string()),
                (RESOURCE_TOPIC, "b".to_string()),
                (RESOURCE_BROKER, "a".to_string()),
                (RESOURCE_TOPIC, "a".to_string()),
            ]
            .into_iter(),
        );
        assert_eq!(
            twice.into_iter().collect::<Vec<_>>(),
            vec![(RESOURCE_TOPIC, "a".to_string())]
        );
    }
}
