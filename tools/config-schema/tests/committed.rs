//! The committed schema is the one the field tables give: regenerated here, compared byte for
//! byte with `schema/geomesh-filter.schema.json`.

use std::path::Path;

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(geomesh_config_schema::SCHEMA_PATH);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let generated = geomesh_config_schema::schema_text();
    if on_disk != generated {
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "{} differs from the field tables (first difference at {line}); run \
             `cargo run -p geomesh-config-schema -- --write` and commit it",
            path.display()
        );
    }
}

#[test]
fn the_schema_is_valid_draft_07_and_describes_every_workload() {
    let schema = geomesh_config_schema::schema();
    assert!(jsonschema::draft7::meta::is_valid(&schema), "not a valid draft-07 schema");
    geomesh_config_schema::validator().unwrap();
    let names: Vec<&str> = schema["properties"]["workload_type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, geomesh_core::WorkloadType::NAMES);
    for n in names {
        assert!(schema["properties"][n].is_object(), "no section `{n}`");
    }
    for id in ["route", "redis", "http", "http.agent", "http.headers", "http.token_cache", "http.replication", "http.clusters"] {
        assert!(schema["definitions"][id].is_object(), "no definition `{id}`");
    }
}
