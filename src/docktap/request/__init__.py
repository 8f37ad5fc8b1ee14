"""Requests read as dockerd reads them: bodies as Go's encoding/json decodes them into the API
types (`body`, `gojson`, the generated `schema_table`), query parameters as dockerd's httputils
reads them (`query`)."""
