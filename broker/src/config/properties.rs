//! Flattening a TOML document into Kafka-style dotted property names.

use std::collections::BTreeMap;

use super::ConfigError;

/// Deeply nested tables are not configuration; this bounds the recursion.
const TOML_DEPTH_MAX: usize = 8;

/// Parses TOML text into `name -> value` pairs with dotted names (`log.dirs`), so that
/// `log.dirs = "x"` and `[log] dirs = "x"` mean the same.
pub fn flatten_toml(text: &str, origin: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| ConfigError::File {
            path: origin.to_string(),
            reason: error.to_string(),
        })?;
    let mut properties = BTreeMap::new();
    flatten_into(&table, "", 0, &mut properties)?;
    Ok(properties)
}

fn flatten_into(
    table: &toml::Table,
    prefix: &str,
    depth: usize,
    properties: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if depth > TOML_DEPTH_MAX {
        return Err(ConfigError::Invalid {
            name: prefix.to_string(),
            value: "…".to_string(),
            reason: "tables nest too deeply".to_string(),
        });
    }
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten_into(inner, &name, depth + 1, properties)?,
            toml::Value::String(text) => {
                properties.insert(name, text.clone());
            }
            toml::Value::Array(items) => {
                let joined: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        toml::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                properties.insert(name, joined.join(","));
            }
            other => {
                properties.insert(name, other.to_string());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_and_tables_flatten_alike() {
        let properties = flatten_toml(
            "log.dirs = \"/tmp/a\"\nnum.partitions = 3\n[log.retention]\nms = 1000\n",
            "test",
        )
        .unwrap();
        assert_eq!(properties["log.dirs"], "/tmp/a");
        assert_eq!(properties["num.partitions"], "3");
        assert_eq!(properties["log.retention.ms"], "1000");
    }

    #[test]
    fn malformed_toml_is_a_file_error() {
        assert!(matches!(
            flatten_toml("log.dirs = ", "bad.toml"),
            Err(ConfigError::File { .. })
        ));
    }
}
