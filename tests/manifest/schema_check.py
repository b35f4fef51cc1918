#!/usr/bin/env python3
"""The manifest's JSON Schema agrees with the parser on the test corpus.

usage: schema_check.py SCHEMA CORPUS_DIR PLATFORM_BIN

- the schema is a valid draft 2020-12 schema, and `platform manifest schema` prints exactly it;
- every manifest in CORPUS_DIR/valid satisfies it;
- every manifest in CORPUS_DIR/invalid violates it, except those listed in invalid/SCHEMA_ACCEPTS (their
  problems are cross-references only the platform's own checks can see) and those that are not TOML.
"""
import json
import pathlib
import subprocess
import sys
import tomllib

import jsonschema


def main() -> int:
    schema_path, corpus, platform = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = []

    printed = subprocess.run([platform, "manifest", "schema"], capture_output=True, text=True, check=True).stdout
    if printed != schema_path.read_text():
        failures.append("`platform manifest schema` differs from " + str(schema_path))

    for path in sorted((corpus / "valid").glob("*.toml")):
        errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text()))]
        if errors:
            failures.append(f"{path.name}: valid for the parser but the schema says: {errors}")

    lines = (corpus / "invalid" / "SCHEMA_ACCEPTS").read_text().splitlines()
    accepts = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    checked = 0
    for path in sorted((corpus / "invalid").glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError:
            continue
        ok = validator.is_valid(doc)
        if path.name in accepts and not ok:
            failures.append(f"{path.name}: listed in SCHEMA_ACCEPTS but the schema rejects it")
        if path.name not in accepts and ok:
            failures.append(f"{path.name}: invalid for the parser but the schema accepts it")
        checked += 1

    for f in failures:
        print("FAIL", f)
    print(f"schema checked against {checked} invalid and the valid manifests: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
