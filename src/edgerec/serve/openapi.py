"""The OpenAPI 3.1 description of ``edgerec serve`` and a self-contained page that shows
it (no CDN: the page works on a machine without internet)."""

from __future__ import annotations

from edgerec.serve.schema import Limits

_ID = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
_IDS = {"type": "array", "items": _ID}
_SECONDS = {"type": "number", "description": "seconds (e.g. Unix time)"}
_ERROR = {
    "description": "Bad request: one line naming the field",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _json(ref: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def openapi_spec(version: str, limits: Limits) -> dict:
    options = {
        "k": {"type": "integer", "minimum": 1, "maximum": limits.max_k, "default": 10},
        "exclude_seen": {
            "type": "boolean",
            "default": True,
            "description": "never return the history's own items",
        },
        "candidates": {**_IDS, "description": "rank only these ids"},
        "exclude": {**_IDS, "description": "never return these ids"},
        "strict": {
            "type": "boolean",
            "default": False,
            "description": "unknown history ids are an error (422) instead of being reported",
        },
    }
    one = {
        "type": "object",
        "required": ["history"],
        "additionalProperties": False,
        "properties": {
            "history": {
                **_IDS,
                "maxItems": limits.max_history,
                "description": "item ids, oldest first; unknown ids are left out and reported",
            },
            "behaviours": {
                "type": "array",
                "items": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "description": "one behaviour per event (e.g. ratings)",
            },
            "timestamps": {"type": "array", "items": _SECONDS},
            "now": {**_SECONDS, "description": "request time; the gate reads the gap"},
            **options,
        },
    }
    many = {
        "type": "object",
        "required": ["histories"],
        "additionalProperties": False,
        "properties": {
            "histories": {"type": "array", "maxItems": limits.max_batch, "items": _IDS},
            "behaviours": {"type": "array", "items": {"type": "array"}},
            "timestamps": {"type": "array", "items": {"type": "array", "items": _SECONDS}},
            "now": {"oneOf": [_SECONDS, {"type": "array", "items": _SECONDS}]},
            **options,
        },
    }
    rec_list = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "item_id": _ID,
                        "score": {"type": "number"},
                        "title": {"type": ["string", "null"]},
                    },
                },
            },
            "gate": {
                "type": ["number", "null"],
                "description": "weight of the long-term interest (null in the fallback)",
            },
            "fallback": {"type": ["string", "null"], "enum": ["popularity", None]},
            "unknown_items": _IDS,
            "unknown_behaviours": {"type": "array"},
            "n_events": {"type": "integer"},
            "n_used": {"type": "integer"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgerec serve",
            "version": version,
            "description": "Next-item recommendations from an edgerec bundle. Errors are "
            '`{"error": "...", "field": "..."}`; every answer from a bundle carries the '
            "`x-edgerec-bundle` header (the bundle's version).",
        },
        "paths": {
            "/recommend": {
                "post": {
                    "summary": "Top-k items for one history (micro-batched with concurrent requests)",
                    "requestBody": {"required": True, **_json("Recommend")},
                    "responses": {
                        "200": {"description": "Recommendations", **_json("RecommendationList")},
                        "400": _ERROR,
                        "413": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/recommend/batch": {
                "post": {
                    "summary": "Top-k items for many histories in one call",
                    "requestBody": {"required": True, **_json("RecommendBatch")},
                    "responses": {
                        "200": {
                            "description": "One list per history, in order",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "results": {
                                                "type": "array",
                                                "items": {
                                                    "$ref": "#/components/schemas/RecommendationList"
                                                },
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "400": _ERROR,
                        "413": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/items": {
                "post": {
                    "summary": "Cold start: add items from their text (bundles with a text encoder)",
                    "requestBody": {"required": True, **_json("AddItems")},
                    "responses": {"200": {"description": "added"}, "409": _ERROR, "422": _ERROR},
                },
                "delete": {
                    "summary": "Stop recommending items",
                    "requestBody": {"required": True, **_json("RemoveItems")},
                    "responses": {"200": {"description": "removed"}, "422": _ERROR},
                },
            },
            "/admin/reload": {
                "post": {
                    "summary": "Verify and load a bundle (default: the served path again) and "
                    "swap it in atomically; on failure the old bundle keeps serving",
                    "requestBody": {"required": False, **_json("Reload")},
                    "responses": {
                        "200": {"description": "reloaded"},
                        "422": {"description": "the bundle failed; the old one still serves"},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and the bundle served",
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text format"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Recommend": one,
                "RecommendBatch": many,
                "RecommendationList": rec_list,
                "AddItems": {
                    "type": "object",
                    "required": ["item_ids", "texts"],
                    "properties": {
                        "item_ids": _IDS,
                        "texts": {"type": "array", "items": {"type": "string"}},
                        "titles": {"type": "array", "items": {"type": ["string", "null"]}},
                    },
                },
                "RemoveItems": {
                    "type": "object",
                    "required": ["item_ids"],
                    "properties": {"item_ids": _IDS},
                },
                "Reload": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "bundle directory"},
                        "keep_items": {
                            "type": "boolean",
                            "default": True,
                            "description": "replay items added/removed through the API",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "field"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                        "unknown_items": _IDS,
                    },
                },
            }
        },
    }


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgerec serve: API</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{font-size:1.1rem;margin-top:1.6rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}
pre{padding:.6rem;overflow:auto;font-size:.85rem}.m{font-weight:bold;margin-right:.5rem}
</style></head>
<body><h1>edgerec serve</h1>
<p>The machine-readable description: <a href="openapi.json">openapi.json</a>.</p>
<div id="api">loading openapi.json ...</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  const out = [`<p>${spec.info.description}</p>`];
  const esc = s => String(s).replace(/[&<>]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;"}[c]));
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      out.push(`<h2><span class="m">${method.toUpperCase()}</span><code>${esc(path)}</code></h2>`);
      out.push(`<p>${esc(op.summary || "")}</p>`);
      const body = op.requestBody && op.requestBody.content["application/json"].schema.$ref;
      if (body) {
        const name = body.split("/").pop();
        out.push(`<pre>${esc(JSON.stringify(spec.components.schemas[name], null, 2))}</pre>`);
      }
      out.push(`<p>responses: ${Object.keys(op.responses).join(", ")}</p>`);
    }
  }
  document.getElementById("api").innerHTML = out.join("\\n");
});
</script></body></html>
"""
