"""The EDL endpoints over HTTP: versions (If-Match / body), conflicts, undo/redo, sizes, ownership."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.renderers import JSONRenderer

from projects.edl import store
from projects.edl.selectors import edl_get
from tests.projects.test_edl_support import (
    content,
    editable,
    timeline_with,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def url(project_or_id, suffix: str = "") -> str:
    pid = getattr(project_or_id, "pk", project_or_id)
    return f"/api/v1/projects/{pid}/edl{suffix}"


def put(client, project, body, **headers):
    return client.put(url(project), body, format="json", **headers)


def stored(project) -> dict[str, Any] | None:
    """The stored document, as any MongoDB client reads it."""
    return store.edl_collection().find_one({"project_id": str(project.pk)})


def stored_version(project) -> Any:
    doc = stored(project)
    assert doc is not None, "the project has no stored document"
    return doc["version"]


def test_get_returns_the_document_with_its_version_and_etag(auth_client, project):
    response = auth_client.get(url(project))
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    assert body["project_id"] == str(project.pk)
    assert response["ETag"] == '"1"'
    assert [t["type"] for t in body["tracks"]] == ["video", "audio"]


def test_get_and_put_answer_the_document_with_text_json_escapes(auth_client, project, make_media):
    """GET's and PUT's bodies are the document's JSON as the API's renderer gives it (the same
    values), with text that JSON escapes or JavaScript must not see raw (U+2028)."""
    doc = timeline_with(auth_client.get(url(project)).json(), make_media(project), clips=3)
    doc["tracks"][0]["name"] = "Vidéo \u2028 \u2029 \"quoted\" \\ \t ☃ 🎬"
    doc["tracks"][1]["name"] = "\x00transcript\x00"  # what GET puts in place of the transcript, as a name
    doc["tracks"][0]["clips"][0].update(effects=[{"type": "speed", "rate": 1.5}], duration_ms=667)
    doc["transcript"]["segments"][0]["text"] = "line\nbreak \u0001 </script>"
    saved = put(auth_client, project, doc, HTTP_IF_MATCH='"1"')
    assert saved.status_code == 200, saved.json()
    response = auth_client.get(url(project))
    assert response.status_code == 200 and response["ETag"] == '"2"'
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == json.loads(JSONRenderer().render(edl_get(project=project)))
    assert json.loads(saved.content) == response.json()
    for body in (response.content.decode(), saved.content.decode()):
        assert "\u2028" not in body and "\u2029" not in body and "\\u2028" in body and "\\u2029" in body
        assert "\x00" not in body and "\n" not in body  # control characters escaped, one line
    assert response.json()["transcript"]["generated_at"] == "2026-01-31T12:00:00.000Z"
    # Asked for indented JSON, it is rendered as asked.
    pretty = auth_client.get(url(project), HTTP_ACCEPT="application/json; indent=2")
    assert pretty.json() == response.json() and b"\n  " in pretty.content


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1"'])
def test_put_with_if_match_saves_the_next_version(auth_client, project, make_media, if_match):
    doc = auth_client.get(url(project)).json()
    body = timeline_with(doc, make_media(project))
    del body["version"]
    response = put(auth_client, project, body, HTTP_IF_MATCH=if_match)
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2
    assert response["ETag"] == '"2"'
    assert content(auth_client.get(url(project)).json())["tracks"] == body["tracks"]


def test_put_with_the_version_in_the_body(auth_client, project, make_media):
    doc = auth_client.get(url(project)).json()
    response = put(auth_client, project, timeline_with(doc, make_media(project)))
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2


def test_if_match_and_body_version_may_agree_but_not_differ(auth_client, project):
    doc = auth_client.get(url(project)).json()
    assert put(auth_client, project, doc, HTTP_IF_MATCH='"1"').status_code == 200
    doc = auth_client.get(url(project)).json()  # v2
    response = put(auth_client, project, doc, HTTP_IF_MATCH='"1"')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "version_mismatch"
    assert stored_version(project) == 2


def test_put_without_any_version_is_428(auth_client, project):
    doc = auth_client.get(url(project)).json()
    del doc["version"]
    response = put(auth_client, project, doc)
    assert response.status_code == 428
    assert response.json()["error"]["code"] == "version_required"
    assert stored_version(project) == 1


@pytest.mark.parametrize("if_match", ["*", '"1", "2"', "abc", '"-1"'])
def test_a_malformed_if_match_is_400(auth_client, project, if_match):
    doc = auth_client.get(url(project)).json()
    response = put(auth_client, project, doc, HTTP_IF_MATCH=if_match)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_if_match"
    assert stored_version(project) == 1


@pytest.mark.parametrize("version", ["1", 1.5, True, [1]])
def test_a_body_version_that_is_not_an_integer_is_400(auth_client, project, version):
    doc = auth_client.get(url(project)).json()
    doc["version"] = version
    response = put(auth_client, project, doc)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_version"


def test_two_writers_first_wins_second_gets_409_and_nothing_changes(auth_client, project, make_media):
    media = make_media(project)
    alice_view = auth_client.get(url(project)).json()
    bob_view = auth_client.get(url(project)).json()

    alice = timeline_with(alice_view, media, clips=1)
    assert put(auth_client, project, alice).json()["version"] == 2
    after_alice = stored(project)

    bob = timeline_with(bob_view, media, clips=3)
    response = put(auth_client, project, bob, HTTP_IF_MATCH='"1"')
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "edl_conflict"
    assert error["details"] == {"current_version": 2}
    assert stored(project) == after_alice
    assert len(auth_client.get(url(project)).json()["tracks"][0]["clips"]) == 1


def test_undo_and_redo_over_http(auth_client, project, make_media):
    media = make_media(project)
    v1 = auth_client.get(url(project)).json()
    v2 = put(auth_client, project, timeline_with(v1, media, clips=1)).json()
    v3 = put(auth_client, project, timeline_with(v2, media, clips=2)).json()

    undone = auth_client.post(url(project, "/undo"))
    assert undone.status_code == 200
    assert undone["ETag"] == '"4"'
    assert undone.json()["version"] == 4
    assert content(undone.json()) == content(v2)

    redone = auth_client.post(url(project, "/redo"))
    assert redone.json()["version"] == 5
    assert content(redone.json()) == content(v3)

    assert auth_client.post(url(project, "/redo")).json()["error"]["code"] == "nothing_to_redo"
    for _ in range(2):
        assert auth_client.post(url(project, "/undo")).status_code == 200
    response = auth_client.post(url(project, "/undo"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "nothing_to_undo"
    assert content(auth_client.get(url(project)).json()) == content(v1)


def test_undo_with_a_stale_if_match_is_409(auth_client, project, make_media):
    v1 = auth_client.get(url(project)).json()
    put(auth_client, project, timeline_with(v1, make_media(project)))
    response = auth_client.post(url(project, "/undo"), HTTP_IF_MATCH='"1"')
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"current_version": 2}
    assert auth_client.post(url(project, "/undo"), HTTP_IF_MATCH='"2"').status_code == 200


def test_validation_errors_are_422_with_field_paths(auth_client, project, make_media):
    doc = timeline_with(auth_client.get(url(project)).json(), make_media(project))
    doc["tracks"][0]["clips"][1]["out_point_ms"] = 0
    doc["tracks"][0]["clips"][0]["colour"] = "red"
    response = put(auth_client, project, doc)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "edl_invalid"
    assert sorted(e["path"] for e in error["details"]["errors"]) == [
        "tracks[0].clips[0].colour",
        "tracks[0].clips[1].out_point_ms",
    ]
    assert stored_version(project) == 1


def test_a_3_mb_document_is_413_and_nothing_is_written(auth_client, project):
    doc = auth_client.get(url(project)).json()
    doc["transcript"]["segments"] = [{
        "id": "s", "speaker": None, "start_ms": 0, "end_ms": 1, "text": "x" * (3 * 1000 * 1000), "words": [],
    }]
    response = put(auth_client, project, doc)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "edl_too_large"
    assert stored_version(project) == 1


def test_a_body_that_is_not_an_object_is_422(auth_client, project):
    auth_client.get(url(project))
    response = auth_client.put(url(project), [1, 2], format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"] == [{"path": "$", "message": "Must be an object."}]


def test_malformed_json_is_400(auth_client, project):
    response = auth_client.generic("PUT", url(project), "{not json", content_type="application/json",
                                   HTTP_IF_MATCH='"1"')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_another_users_project_is_404_everywhere_and_nothing_is_written(auth_client, client_for, make_user,
                                                                         make_project, make_media):
    owner = make_user()
    theirs = make_project(owner)
    owner_client = client_for(owner)
    v1 = owner_client.get(url(theirs)).json()
    put(owner_client, theirs, timeline_with(v1, make_media(theirs)))  # v2, with something to undo
    before = stored(theirs)
    history_before = store.history_collection().count_documents({"project_id": str(theirs.pk)})

    attempts = [
        auth_client.get(url(theirs)),
        put(auth_client, theirs, {**v1, "version": 2}),
        put(auth_client, theirs, {**v1, "version": 2}, HTTP_IF_MATCH='"2"'),
        auth_client.post(url(theirs, "/undo")),
        auth_client.post(url(theirs, "/redo")),
    ]
    for response in attempts:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "project_not_found"
    assert stored(theirs) == before
    assert store.history_collection().count_documents({"project_id": str(theirs.pk)}) == history_before


def test_another_users_project_without_an_edl_does_not_get_one(auth_client, make_user, make_project):
    theirs = make_project(make_user())
    assert auth_client.get(url(theirs)).status_code == 404
    assert stored(theirs) is None


@pytest.mark.parametrize("suffix", ["", "/undo", "/redo"])
def test_malformed_and_unknown_project_ids_are_404(auth_client, suffix):
    method = auth_client.get if suffix == "" else auth_client.post
    for pid in ("not-a-uuid", "123", str(uuid.uuid4())):
        response = method(url(pid, suffix))
        assert response.status_code == 404, pid
        assert response.json()["error"]["code"] in ("not_found", "project_not_found")


def test_anonymous_requests_are_401(api_client, project):
    assert api_client.get(url(project)).status_code == 401
    assert api_client.put(url(project), {}, format="json").status_code == 401
    assert stored(project) is None


def test_a_client_can_save_back_what_it_read(auth_client, project, make_media):
    """GET -> edit -> PUT with the body exactly as read (server fields included)."""
    saved = put(auth_client, project, timeline_with(auth_client.get(url(project)).json(), make_media(project))).json()
    read = auth_client.get(url(project)).json()
    assert read == saved
    again = editable(read)
    again["tracks"][0]["name"] = "Main"
    response = auth_client.put(url(project), json.dumps(again), content_type="application/json")
    assert response.status_code == 200
    assert response.json()["tracks"][0]["name"] == "Main"


def test_the_openapi_schema_describes_the_edl_endpoints():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    for path, methods in (("/api/v1/projects/{project_id}/edl", {"get", "put"}),
                          ("/api/v1/projects/{project_id}/edl/undo", {"post"}),
                          ("/api/v1/projects/{project_id}/edl/redo", {"post"})):
        assert methods <= set(paths[path]), path
    put_op = paths["/api/v1/projects/{project_id}/edl"]["put"]
    assert {"409", "413", "422", "428"} <= set(put_op["responses"])
    assert any(p["name"] == "If-Match" for p in put_op["parameters"])


def test_a_document_in_the_published_shape_with_its_stacks_saves_and_get_shows_the_stacks(
    auth_client, project, make_media
):
    """The EDL's published shape carries `undo_stack` and `redo_stack`: a client that sends them
    back (empty, or as read) saves; the server keeps the stacks and shows them."""
    media = make_media(project)
    v1 = auth_client.get(url(project)).json()
    assert (v1["undo_stack"], v1["redo_stack"]) == ([], [])
    spec_shaped = {**timeline_with(v1, media, clips=1), "undo_stack": [], "redo_stack": []}
    v2 = put(auth_client, project, spec_shaped)
    assert v2.status_code == 200, v2.json()
    assert (v2.json()["undo_stack"], v2.json()["redo_stack"]) == ([1], [])
    # Whatever a client writes into them is not taken: only undo and redo move along them.
    v3 = put(auth_client, project, {**timeline_with(v2.json(), media, clips=2), "undo_stack": [99], "redo_stack": [7]})
    assert v3.status_code == 200 and (v3.json()["undo_stack"], v3.json()["redo_stack"]) == ([1, 2], [])
    undone = auth_client.post(url(project, "/undo")).json()
    assert (undone["undo_stack"], undone["redo_stack"]) == ([1], [3])
    assert undone["history"] == {"undo": 1, "redo": 1}


def test_a_put_frees_what_it_made_before_the_collector_is_back_on(auth_client, project, make_media):
    """The parsed body and the saved timeline are gone (freed by reference counting) by the time
    the collector runs again: no pass over the young objects during the PUT meets them."""
    import gc

    doc = timeline_with(auth_client.get(url(project)).json(), make_media(project), clips=1500)
    body = json.dumps(doc)
    young: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] < 2:
            young.append(sum(len(gc.get_objects(generation)) for generation in range(info["generation"] + 1)))

    gc.collect()
    gc.callbacks.append(watch)
    try:
        saved = auth_client.put(url(project), body, content_type="application/json", HTTP_IF_MATCH='"1"')
        gc.collect(0)  # the pass due once the PUT's allocations are counted (if not run already)
    finally:
        gc.callbacks.remove(watch)
    assert saved.status_code == 200, saved.json()
    assert len(saved.json()["tracks"][0]["clips"]) == 1500  # the answer is whole
    # Still alive there, 1,500 clips parsed and saved are about 7,000 tracked dicts and lists
    # (a pass meets ~900 without them).
    assert young and max(young) < 3000, young
