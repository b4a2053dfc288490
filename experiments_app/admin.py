from django.contrib import admin

from experiments_app import models


@admin.register(models.Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "team", "role", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role", "team"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]


@admin.register(models.Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "webhook_url", "max_concurrency", "timeout_seconds"]
    list_filter = ["team"]
    search_fields = ["name", "webhook_url"]


@admin.register(models.InferenceStep)
class InferenceStepAdmin(admin.ModelAdmin):
    list_display = ["external_id", "name", "application"]
    list_filter = ["application"]
    search_fields = ["external_id", "name"]


@admin.register(models.Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["external_id", "name", "application", "created_at"]
    list_filter = ["application"]
    search_fields = ["external_id", "name"]


class VariantInline(admin.TabularInline):
    model = models.Variant
    fields = ["name", "parent", "inference_step", "parameter", "value"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class TransitionInline(admin.TabularInline):
    model = models.Transition
    fields = ["at", "verb", "from_status", "to_status", "by"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(models.Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "application", "status", "locked_at", "completed_at", "created_at"]
    list_filter = ["status", "team"]
    search_fields = ["name", "description"]
    readonly_fields = ["status", "locked_at", "completed_at", "winner"]
    filter_horizontal = ["inference_steps", "tasks"]
    inlines = [VariantInline, TransitionInline]


@admin.register(models.Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ["name", "experiment", "parent", "inference_step", "parameter", "value"]
    list_filter = ["experiment"]


@admin.register(models.Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "variant", "experiment", "status", "total", "passed", "failed", "errored", "started_at", "completed_at"]
    list_filter = ["status"]
    readonly_fields = ["aggregates", "outcomes", "config"]


@admin.register(models.Test)
class TestAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "task_external_id", "repetition", "status", "attempts"]
    list_filter = ["status"]
    search_fields = ["task_external_id", "id"]
    raw_id_fields = ["run", "task"]


@admin.register(models.DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = ["test", "number", "started_at", "status_code", "duration_ms", "error"]
    raw_id_fields = ["test"]


@admin.register(models.Transition)
class TransitionAdmin(admin.ModelAdmin):
    list_display = ["experiment", "verb", "from_status", "to_status", "by", "at"]
    list_filter = ["verb"]
