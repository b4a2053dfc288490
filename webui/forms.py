"""Forms check the shape of what a page posts; the actions check the rules."""

import csv
import io

from django import forms

from experiments_app import jsonlimits
from experiments_app.errors import ValidationFailed
from experiments_app.models import EventType, Role
from experiments_app.overrides import PARAMETERS

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def apply_errors(form, error):
    """Put an action's ValidationFailed messages on the form fields they name (others on the form)."""
    field_for = getattr(form, "field_for_error", lambda key: key)
    for key, messages_ in error.errors.items():
        field = field_for(key)
        field = field if field in form.fields else None
        for message in messages_:
            # A sub-path (`evaluators[0].type`) keeps its name in the message.
            form.add_error(field, message if field == key else f"{key}: {message}")
    return form


class ApplicationForm(forms.Form):
    name = forms.CharField(max_length=200)
    delivery = forms.ChoiceField(
        choices=[
            ("push", "Push — the dashboard POSTs each test to the webhook URL"),
            ("pull", "Pull — the application leases its tests (behind a firewall, in a notebook)"),
        ],
        initial="push",
        required=False,  # not posted: unchanged (push for a new application)
        widget=forms.RadioSelect,
        help_text="Cannot change while a run of this application is active.",
    )
    webhook_url = forms.CharField(
        max_length=2000,
        required=False,
        label="Webhook URL",
        help_text="Needed in push mode; a pull application may leave it empty.",
        widget=forms.URLInput(attrs={"placeholder": "https://app.example/webhooks/experiments"}),
    )
    timeout_seconds = forms.IntegerField(min_value=1, initial=30, help_text="Per delivery attempt (in pull mode: the default lease).")
    result_timeout_seconds = forms.IntegerField(min_value=1, initial=300, help_text="How long to wait for a result after a 202.")
    max_concurrency = forms.IntegerField(min_value=1, initial=20, help_text="Requests in flight (or tests leased) at once.")

    def clean_delivery(self):
        return self.cleaned_data["delivery"] or None

    def clean_webhook_url(self):
        url = self.cleaned_data["webhook_url"].strip()
        if url and not url.startswith(("http://", "https://")):
            raise forms.ValidationError("An http(s) URL is required.")
        return url


class StepForm(forms.Form):
    external_id = forms.CharField(max_length=200, label="External id", help_text="The step name your code uses in `overrides`.")
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    config = forms.JSONField(
        required=False,
        initial=dict,
        help_text="Production parameters as a JSON object.",
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
    )

    def clean_config(self):
        config = self.cleaned_data["config"]
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise forms.ValidationError("Must be a JSON object of parameters.")
        return config

    def field_for_error(self, key):
        return "config" if key.startswith("config") else key


def parse_tags(text):
    return [tag.strip() for tag in (text or "").replace("|", ",").split(",") if tag.strip()]


class OptionalJSONField(forms.JSONField):
    """A JSON field whose empty value reads as empty, not as `null`."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


class TaskForm(forms.Form):
    external_id = forms.CharField(max_length=200, label="External id")
    name = forms.CharField(max_length=500, required=False)
    input = forms.JSONField(
        required=False, initial=dict, help_text="A JSON object.", widget=forms.Textarea(attrs={"rows": 4, "class": "mono"})
    )
    expected = OptionalJSONField(
        required=False, help_text="Any JSON; empty for none.", widget=forms.Textarea(attrs={"rows": 2, "class": "mono"})
    )
    tags = forms.CharField(required=False, help_text="Comma-separated.")

    def clean_tags(self):
        return parse_tags(self.cleaned_data["tags"])


class TaskImportForm(forms.Form):
    file = forms.FileField(
        required=False, help_text="JSONL (one task object per line) or CSV with columns external_id, name, input, expected, tags."
    )
    text = forms.CharField(
        required=False,
        strip=False,
        label="Or paste JSONL or CSV",
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono", "placeholder": '{"external_id": "q1", "input": {"question": "…"}}'}),
    )
    on_existing = forms.ChoiceField(
        label="Tasks that already exist",
        choices=[
            ("refuse", "List them as errors (nothing is imported)"),
            ("skip", "Skip them"),
            ("update", "Update them, except tasks a locked experiment uses"),
        ],
        initial="refuse",
        required=False,
        widget=forms.RadioSelect,
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload and upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError("The file is larger than 20 MB.")
        return upload

    # The buttons offered after an import refused existing tasks: import the same rows again this way.
    again = forms.ChoiceField(required=False, choices=[("skip", "Skip"), ("update", "Update")])

    def clean(self):
        data = super().clean()
        data["on_existing"] = data.get("again") or data.get("on_existing") or "refuse"
        if not data.get("file") and not (data.get("text") or "").strip() and not self.errors:
            raise forms.ValidationError("Choose a file or paste tasks.")
        return data

    def rows(self):
        """The tasks to import (TaskRows) from the file, else the pasted text; raises ValidationFailed."""
        upload = self.cleaned_data.get("file")
        if upload:
            return parse_task_file(upload.name, upload.read())
        return parse_tasks(self.cleaned_data["text"])


class TaskRows(list):
    """Task dicts read from JSONL or CSV; `lines[i]` is the 1-based line row i starts on."""

    def __init__(self, rows, lines, text):
        super().__init__(rows)
        self.lines = lines
        self.text = text


def parse_task_file(name, content):
    """TaskRows from a JSONL or CSV upload. Raises ValidationFailed keyed `line N` /
    `line N.field` (1-based) for rows that cannot be read, before any is saved."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed({"file": "The file is not UTF-8 text."}) from None
    return parse_tasks(text, "csv" if name.lower().endswith(".csv") else "jsonl" if name.lower().endswith((".jsonl", ".json")) else None)


def parse_tasks(text, kind=None):
    """TaskRows from pasted or uploaded text: JSONL, or CSV with a header row (`kind` None: a
    first line starting with `{` is JSONL)."""
    if kind is None:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        kind = "jsonl" if first.startswith("{") else "csv"
    return parse_csv(text) if kind == "csv" else parse_jsonl(text)


def parse_jsonl(text):
    rows, lines, errors = [], [], {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(jsonlimits.loads(line))
        except jsonlimits.InvalidJSON as error:
            errors[f"line {line_number}"] = f"Not valid JSON: {error}."
            rows.append(None)
        lines.append(line_number)
    if errors:
        raise ValidationFailed(errors)
    if not rows:
        raise ValidationFailed({"file": "The file holds no tasks."})
    return TaskRows(rows, lines, text)


def csv_json(value, *, strict):
    """A CSV cell as JSON; a cell that is not JSON is a plain string unless `strict`."""
    if value is None or value == "":
        return None
    try:
        return jsonlimits.loads(value)
    except jsonlimits.InvalidJSON:
        if strict:
            raise
        return value


def parse_csv(text):
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "external_id" not in reader.fieldnames:
        raise ValidationFailed({"file": "The CSV needs a header row with at least external_id and input."})
    rows, lines, errors = [], [], {}
    for record in reader:
        # line_num is the record's last line; a quoted cell may span lines, and blank lines are skipped
        line = reader.line_num - sum(value.count("\n") for value in record.values() if isinstance(value, str))
        row = {"external_id": record.get("external_id") or ""}
        if record.get("name"):
            row["name"] = record["name"]
        try:
            row["input"] = csv_json(record.get("input"), strict=True)
        except jsonlimits.InvalidJSON as error:
            errors[f"line {line}.input"] = f"Not valid JSON: {error}."
        if record.get("expected") not in (None, ""):
            row["expected"] = csv_json(record["expected"], strict=False)
        if record.get("tags"):
            tags = csv_json(record["tags"], strict=False)
            row["tags"] = tags if isinstance(tags, list) else parse_tags(record["tags"])
        rows.append(row)
        lines.append(line)
    if errors:
        raise ValidationFailed(errors)
    if not rows:
        raise ValidationFailed({"file": "The file holds no tasks."})
    return TaskRows(rows, lines, text)


# The steps of setting up an experiment, numbered alike on /experiments/new/ and the setup page.
SETUP_STEPS = (
    ("details", "Name and hypothesis"),
    ("steps", "Inference steps"),
    ("tasks", "Tasks"),
    ("baseline", "Baseline config"),
    ("settings", "Evaluation settings"),
    ("run", "Run the baseline"),
)


def numbered_setup_steps():
    """{key: "2 · Inference steps"} for every step of SETUP_STEPS."""
    return {key: f"{number} · {title}" for number, (key, title) in enumerate(SETUP_STEPS, start=1)}


class ExperimentForm(forms.Form):
    application = forms.ChoiceField()
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"placeholder": "Lower temperature to cut hallucinations"}))
    description = forms.CharField(
        required=False,
        label="Hypothesis",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Lowering temperature 0.7→0.3 raises the pass rate."}),
    )

    def __init__(self, *args, applications=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["application"].choices = [(str(app.pk), app.name) for app in applications]


class StepsForm(forms.Form):
    steps = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, steps=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["steps"].choices = [(step.external_id, step.external_id) for step in steps]


class TaskFilterForm(forms.Form):
    """The task picker's search: text in the external id or name, a tag, selected or not."""

    SHOW = [("", "All tasks"), ("selected", "Selected"), ("unselected", "Not selected")]
    q = forms.CharField(required=False, max_length=200, label="Search")
    tag = forms.CharField(required=False, max_length=200)
    show = forms.ChoiceField(choices=SHOW, required=False)
    page = forms.CharField(required=False, max_length=20)

    def filters(self):
        """The filters as strings; a bad one (too long, unknown `show`) is left out rather than refused."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {name: (data.get(name) or "").strip() for name in ("q", "tag", "show", "page")}


class TaskPickForm(TaskFilterForm):
    """One change to the selection: add or remove a task, or add/remove every task the filters match."""

    BULK = [("add-matching", "Add all matching"), ("remove-matching", "Remove all matching"), ("only-matching", "Select only these")]
    add = forms.UUIDField(required=False)
    remove = forms.UUIDField(required=False)
    bulk = forms.ChoiceField(choices=BULK, required=False)

    def clean(self):
        data = super().clean()
        chosen = [name for name in ("add", "remove", "bulk") if data.get(name)]
        if len(chosen) != 1 and not self.errors:
            raise forms.ValidationError("Name one change: a task to add, a task to remove, or add/remove all matching.")
        return data


class DetailsForm(forms.Form):
    """Name and hypothesis: they do not change what is compared, so they stay editable after the lock."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, label="Hypothesis", widget=forms.Textarea(attrs={"rows": 2}))


class SettingsForm(forms.Form):
    repetitions = forms.IntegerField(min_value=1, max_value=20, help_text="Runs of each task per variant (1–20).")
    max_error_rate = forms.FloatField(min_value=0, max_value=1, help_text="A run fails above this share of errored tests.")
    evaluators = forms.JSONField(
        required=False,
        help_text='A JSON list, e.g. [{"type": "exact_match"}]; empty: reported, else exact match.',
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
    )
    alpha = forms.FloatField(
        required=False,  # not posted: unchanged (see `changes`)
        min_value=0.001,
        max_value=0.2,
        widget=forms.NumberInput(attrs={"step": "0.001"}),
        help_text="Significance level (0.001–0.2): verdicts, marks and intervals use it; 0.05 gives 95% intervals.",
    )
    guardrails = forms.JSONField(
        required=False,
        help_text='A JSON list, e.g. [{"metric": "latency_ms", "statistic": "p95", "margin": 50}] or '
        '[{"evaluator": "exact_match", "margin_pp": 2}]: a variant ships only when no worse than the baseline by more than the margin.',
        widget=forms.Textarea(attrs={"rows": 2, "class": "mono"}),
    )

    def __init__(self, *args, editable=None, **kwargs):
        """`editable`: the fields that may change (None: all); the others are shown disabled."""
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if editable is not None and name not in editable:
                field.disabled = True

    def clean_evaluators(self):
        value = self.cleaned_data["evaluators"]
        return [] if value in (None, "") else value

    def clean_guardrails(self):
        value = self.cleaned_data["guardrails"]
        return [] if value in (None, "") else value

    def clean_alpha(self):
        value = self.cleaned_data["alpha"]
        if value is None and self.is_posted("alpha"):
            raise forms.ValidationError("This field is required.")
        return value

    def is_posted(self, name):
        return self.add_prefix(name) in self.data

    def changes(self):
        """The cleaned values of the fields that may change (disabled ones keep their initial value)."""
        # alpha and guardrails came later: a client that does not post them leaves them as they are
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if not self.fields[name].disabled and (name not in ("alpha", "guardrails") or self.is_posted(name))
        }

    def field_for_error(self, key):
        for name in ("evaluators", "guardrails"):
            if key.startswith(name):
                return name
        return key


class PlannerForm(forms.Form):
    """The planner's question (stats.plan): the tasks needed to detect a difference."""

    expected_pass_rate = forms.FloatField(
        min_value=0, max_value=100, label="Expected pass rate (%)", help_text="The baseline's pass rate you expect."
    )
    min_difference_pp = forms.FloatField(
        min_value=0.1, max_value=100, label="Smallest difference that matters (pt)", help_text="In percentage points."
    )
    alpha = forms.FloatField(min_value=0.001, max_value=0.2, widget=forms.NumberInput(attrs={"step": "0.001"}))
    power = forms.FloatField(min_value=0.5, max_value=0.99, widget=forms.NumberInput(attrs={"step": "0.05"}))
    k = forms.IntegerField(min_value=1, max_value=20, label="Repetitions (k)")
    measured = forms.BooleanField(required=False, label="Use the baseline's measured noise")

    def clean(self):
        data = super().clean()
        rate, difference = data.get("expected_pass_rate"), data.get("min_difference_pp")
        if rate is not None and difference is not None and rate + difference > 100 and rate - difference < 0:
            self.add_error("min_difference_pp", "No pass rate is this far from the expected one.")
        return data


def parameter_field(parameter, *, required=True, label=None):
    """The form field that fits a parameter's type: a textarea for `system`, a
    slider/number for fractions, an integer for max_tokens, a select for choices."""
    spec = PARAMETERS[parameter]
    help_text = f"{spec.describe().capitalize()}."
    if spec.kind == "choice":
        choices = ([("", "— unset —")] if not required else []) + [(choice, choice) for choice in spec.choices]
        return forms.ChoiceField(choices=choices, required=required, label=label, help_text=help_text)
    if spec.kind == "integer":
        return forms.IntegerField(
            required=required, label=label, min_value=int(spec.minimum), max_value=int(spec.maximum), help_text=help_text
        )
    if spec.kind == "number":
        widget = forms.NumberInput(attrs={"step": "0.01", "min": spec.minimum, "max": spec.maximum, "data-slider": "1"})
        return forms.FloatField(required=required, label=label, widget=widget, help_text=help_text)
    widget = forms.Textarea(attrs={"rows": 4}) if parameter == "system" else forms.TextInput()
    return forms.CharField(required=required, label=label, widget=widget, max_length=int(spec.maximum), strip=False, help_text=help_text)


class BaselineForm(forms.Form):
    """One typed input per (step, parameter); empty means the step does not set it."""

    def __init__(self, *args, config=None, steps=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = list(steps)
        self.config = config or {}
        for step in self.steps:
            values = self.config.get(step, {})
            for parameter in PARAMETERS:
                name = f"{step}__{parameter}"
                self.fields[name] = parameter_field(parameter, required=False, label=parameter)
                self.fields[name].initial = values.get(parameter)

    def field_for_error(self, key):
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "config":
            return f"{parts[1]}__{parts[2]}"
        return None

    def grouped(self):
        return [(step, [self[f"{step}__{parameter}"] for parameter in PARAMETERS]) for step in self.steps]

    def baseline_config(self):
        """The config to save: typed values set here, other keys of the current config kept."""
        config = {}
        for step in self.steps:
            kept = {key: value for key, value in self.config.get(step, {}).items() if key not in PARAMETERS}
            for parameter in PARAMETERS:
                value = self.cleaned_data.get(f"{step}__{parameter}")
                if value not in (None, ""):
                    kept[parameter] = value
            config[step] = kept
        return config


class BranchForm(forms.Form):
    parent = forms.CharField(widget=forms.HiddenInput)
    inference_step = forms.ChoiceField(label="Step")
    parameter = forms.ChoiceField(choices=[(name, name) for name in PARAMETERS])
    name = forms.CharField(max_length=200, required=False, help_text="Optional; defaults to the change.")

    def __init__(self, *args, steps=(), parameter=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["inference_step"].choices = [(step, step) for step in steps]
        chosen = parameter if parameter in PARAMETERS else "temperature"
        self.fields["value"] = parameter_field(chosen)
        self.parameter = chosen

    def field_for_error(self, key):
        return key if key in self.fields else None


class CompleteForm(forms.Form):
    winner = forms.ChoiceField(required=False)

    def __init__(self, *args, variants=(), labels=None, **kwargs):
        """`labels`: {variant id: what to show for it} (its pass rate and Δ); the name otherwise."""
        super().__init__(*args, **kwargs)
        labels = labels or {}
        self.fields["winner"].choices = [("", "No winner")] + [(str(v.pk), labels.get(str(v.pk), v.name)) for v in variants]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, help_text="What uses it, e.g. “CI”.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)


class EventEndpointForm(forms.Form):
    url = forms.CharField(
        max_length=2000, label="URL", widget=forms.URLInput(attrs={"placeholder": "https://ci.example/hooks/experiments"})
    )
    events = forms.MultipleChoiceField(choices=EventType.choices, widget=forms.CheckboxSelectMultiple, initial=[EventType.RUN_COMPLETED])
    application = forms.ChoiceField(required=False, help_text="Empty: events of every application of the team.")
    description = forms.CharField(max_length=2000, required=False)

    def __init__(self, *args, applications=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["application"].choices = [("", "Every application"), *((str(app.pk), app.name) for app in applications)]

    def cleaned_for_action(self):
        data = dict(self.cleaned_data)
        data["application"] = data.get("application") or None
        return data


class DryRunForm(forms.Form):
    """ "Try on k tasks": which variant (the baseline included) and how many selected tasks."""

    variant = forms.ChoiceField(label="Try")
    tasks = forms.IntegerField(min_value=1, max_value=100, initial=1, label="on", help_text="tasks, chosen at random")

    def __init__(self, *args, variants, **kwargs):
        super().__init__(*args, **kwargs)
        self.variants = {str(variant.pk): variant for variant in variants}
        self.fields["variant"].choices = [(pk, variant.name) for pk, variant in self.variants.items()]
        if variants and not self.is_bound:
            self.fields["variant"].initial = str(variants[-1].pk)  # the newest: usually the one about to run

    def chosen_variant(self):
        return self.variants[self.cleaned_data["variant"]]
