"""Comments on a timeline: members who may comment start threads at a time range (with the
timeline's version they saw), reply, resolve; only an author changes or deletes their words."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from auteur.users.models import Membership, User, Workspace
from projects.models import Comment, Project
from tests.factories import ProjectFactory, acting_in, team_workspace

pytestmark = pytest.mark.django_db




@pytest.fixture
def studio(make_user: Callable[..., User]) -> tuple[Workspace, Project, dict[str, User]]:
    people = {role: make_user() for role in ("owner", "editor", "viewer", "billing")}
    team = team_workspace(people["owner"])
    for role in ("editor", "viewer", "billing"):
        Membership.objects.create(workspace=team, user=people[role], role=role)
    project = ProjectFactory.create(user=User.objects.get(pk=team.pk))
    return team, project, people


def comments_url(project: Project) -> str:
    return f"/api/v1/projects/{project.pk}/comments"


def test_members_comment_on_a_time_range_reply_and_resolve_the_thread(studio: Any):
    team, project, people = studio
    made = acting_in(people["viewer"], team).post(comments_url(project), {
        "text": "The cut at 0:12 is abrupt", "start_ms": 12_000, "end_ms": 13_500, "edl_version": 4}, format="json")
    assert made.status_code == 201, made.content
    thread = made.json()
    assert (thread["start_ms"], thread["end_ms"], thread["edl_version"]) == (12_000, 13_500, 4)
    assert thread["member_id"] == str(people["viewer"].pk) and thread["parent_id"] is None

    reply = acting_in(people["editor"], team).post(comments_url(project), {
        "text": "Fixed", "parent_id": thread["id"]}, format="json").json()
    nested = acting_in(people["owner"], team).post(comments_url(project), {
        "text": "Thanks", "parent_id": reply["id"]}, format="json").json()
    assert reply["parent_id"] == nested["parent_id"] == thread["id"]  # a reply to a reply joins the thread

    resolved = acting_in(people["viewer"], team).patch(f"{comments_url(project)}/{reply['id']}", {"resolved": True},
                                                       format="json")
    assert resolved.status_code == 200, resolved.content
    listed = acting_in(people["owner"], team).get(comments_url(project)).json()
    assert [c["id"] for c in listed["comments"]] == [thread["id"], reply["id"], nested["id"]]
    assert listed["comments"][0]["resolved_by"] == str(people["viewer"].pk)
    assert acting_in(people["owner"], team).get(comments_url(project) + "?resolved=false").json()["count"] == 0
    assert acting_in(people["owner"], team).get(comments_url(project) + "?resolved=true").json()["count"] == 3
    # Outside the workspace the project is not found, comments included.
    assert acting_in(people["billing"], team).get(comments_url(project)).status_code == 403
    assert APIClient().get(comments_url(project)).status_code == 401


@pytest.mark.parametrize(("body", "field"), [
    ({"text": "x"}, "start_ms"),
    ({"text": "x", "start_ms": 5, "end_ms": 4, "edl_version": 1}, "end_ms"),
    ({"text": "x", "start_ms": 1, "end_ms": 2, "edl_version": 0}, "edl_version"),
    ({"text": "x", "start_ms": -1, "end_ms": 2, "edl_version": 1}, "start_ms"),
    ({"text": "x" * 5001, "start_ms": 1, "end_ms": 2, "edl_version": 1}, "text"),
    ({"text": "x", "parent_id": str(uuid.uuid4()), "start_ms": 1}, "start_ms"),
    ({"text": "x", "start_ms": 1, "end_ms": 2, "edl_version": 1, "author": "me"}, "author"),
])
def test_a_comment_without_its_range_or_with_bad_fields_is_refused(studio: Any, body: dict[str, Any], field: str):
    team, project, people = studio
    answer = acting_in(people["editor"], team).post(comments_url(project), body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["error"]["details"]["fields"]
    assert not Comment.objects.exists()


def test_a_reply_to_a_comment_of_another_project_is_not_found(studio: Any):
    team, project, people = studio
    other = ProjectFactory.create(user=User.objects.get(pk=team.pk))
    thread = Comment.objects.create(project=other, user_id=team.pk, member_id=people["owner"].pk, text="t",
                                    start_ms=0, end_ms=1, edl_version=1)
    answer = acting_in(people["editor"], team).post(comments_url(project), {"text": "x", "parent_id": str(thread.pk)},
                                                    format="json")
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "comment_not_found")


def test_only_its_author_changes_a_comment_and_its_author_or_a_moderator_deletes_it(studio: Any):
    team, project, people = studio
    body = {"text": "Mine", "start_ms": 0, "end_ms": 1, "edl_version": 1}
    thread = acting_in(people["viewer"], team).post(comments_url(project), body, format="json").json()
    acting_in(people["editor"], team).post(comments_url(project), {"text": "r", "parent_id": thread["id"]},
                                           format="json")
    url = f"{comments_url(project)}/{thread['id']}"

    for who, method, data in (("owner", "patch", {"text": "Theirs"}), ("editor", "delete", None)):
        refused = getattr(acting_in(people[who], team), method)(url, data, format="json")
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    assert acting_in(people["viewer"], team).patch(url, {"text": "Edited"}, format="json").json()["text"] == "Edited"
    assert acting_in(people["viewer"], team).delete(url).status_code == 204
    assert not Comment.objects.exists()  # the thread went with its replies
    # An owner (or an admin) moderates: any member's comment goes.
    other = acting_in(people["editor"], team).post(comments_url(project), body, format="json").json()
    assert acting_in(people["owner"], team).delete(f"{comments_url(project)}/{other['id']}").status_code == 204


def test_a_project_keeps_at_most_its_quota_of_comments(studio: Any, settings: Any):
    team, project, people = studio
    settings.AUTEUR_QUOTA_COMMENTS = 1
    body = {"text": "x", "start_ms": 0, "end_ms": 1, "edl_version": 1}
    assert acting_in(people["editor"], team).post(comments_url(project), body, format="json").status_code == 201
    refused = acting_in(people["editor"], team).post(comments_url(project), body, format="json")
    assert (refused.status_code, refused.json()["error"]["details"]["quota"]) == (403, "comments")
    assert Comment.objects.count() == 1


def test_a_single_user_comments_on_their_own_project(user: User, auth_client: APIClient):
    project = ProjectFactory.create(user=user)
    made = auth_client.post(comments_url(project), {"text": "note", "start_ms": 0, "end_ms": 0, "edl_version": 1},
                            format="json")
    assert made.status_code == 201 and made.json()["member_id"] == str(user.pk)
    other = ProjectFactory.create()
    assert auth_client.get(comments_url(other)).status_code == 404
