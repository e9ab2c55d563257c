"""Comments on a project's timeline; a session as the API's role sees and writes those of its account only."""

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0005_api_grants'),
        ('projects', '0007_members'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Comment',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('member_id', models.UUIDField()),
                ('start_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('end_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('edl_version', models.PositiveIntegerField(blank=True, null=True)),
                ('text', models.TextField(max_length=5000)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('resolved_by', models.UUIDField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='replies', to='projects.comment')),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='comments', to='projects.project')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'project_comments',
                'ordering': ('created_at', 'id'),
                'indexes': [models.Index(fields=['project', 'created_at'], name='comments_by_project')],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('edl_version__isnull', False), ('end_ms__gte', models.F('start_ms')), ('end_ms__isnull', False), ('parent__isnull', True), ('start_ms__isnull', False)), models.Q(('edl_version__isnull', True), ('end_ms__isnull', True), ('parent__isnull', False), ('start_ms__isnull', True)), _connector='OR'), name='comment_range_or_reply')],
            },
        ),
        migrations.RunSQL(*owner_policy("project_comments")),
        migrations.RunSQL(*api_grant("project_comments", "SELECT, INSERT, UPDATE (text, resolved_at, resolved_by, updated_at), DELETE")),
    ]
