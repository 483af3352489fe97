"""The workshop form of the Slurm spawner: what a participant may ask for, and its checks.

Like Jupyter-JSC's "new JupyterLab" dialog: project (Slurm account), partition, reservation
(the workshop's preselected), runtime, cores and GPUs. The choices come from the site
profile's ``[hub.slurm]`` table (:class:`psml.sites.profile.SlurmSettings`). Pure functions, no
JupyterHub::

    req = validate(hub, {"partition": ["batch"], "cores": ["2"]})   # form data or REST JSON
    req.sbatch_options()   # ['--partition=batch', '--ntasks=2', ...]

``validate`` refuses every bad choice at once with a :class:`FormError` whose message says
what is allowed ("cores: 64 is more than partition 'batch' allows (1 to 4)").
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from typing import Mapping

from psml.errors import PsmlError
from psml.sites.profile import SlurmSettings

FIELDS = ("account", "partition", "reservation", "runtime", "cores", "gpus")
NO_RESERVATION = ""


class FormError(PsmlError, ValueError):
    """Choices the workshop does not offer; the message lists what is allowed."""


@dataclass(frozen=True)
class JobRequest:
    """What the Jupyter job asks Slurm for (validated)."""
    account: str
    partition: str
    reservation: str
    runtime: int   # minutes
    cores: int     # Slurm tasks, one core each: MPI/ipyparallel units start one rank per task
    gpus: int

    def as_options(self) -> dict:
        """JSON-able ``user_options`` (JupyterHub stores them and shows them to admins)."""
        return asdict(self)

    def sbatch_options(self) -> list[str]:
        opts = [f"--partition={self.partition}", f"--time={self.runtime}",
                f"--ntasks={self.cores}", "--cpus-per-task=1"]
        if self.account:
            opts.append(f"--account={self.account}")
        if self.reservation:
            opts.append(f"--reservation={self.reservation}")
        if self.gpus:
            opts.append(f"--gres=gpu:{self.gpus}")
        return opts


def defaults(hub: SlurmSettings) -> JobRequest:
    """The preselected choices: first account and partition, the workshop's reservation."""
    partition = next(iter(hub.partitions))
    return JobRequest(account=hub.accounts[0] if hub.accounts else "", partition=partition,
                      reservation=hub.reservation, runtime=hub.runtime, cores=hub.cores, gpus=0)


def _one(raw: Mapping, key: str):
    """A form field arrives as a list of strings, a REST option as a scalar."""
    value = raw.get(key)
    if isinstance(value, list):
        if len(value) != 1:
            raise FormError(f"{key}: expected one value, got {len(value)}")
        value = value[0]
    return value.strip() if isinstance(value, str) else value


def _whole(value, key: str, low: int, high: int, what: str, errors: list[str]) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(f"{key}: {value!r} is not allowed; {what} allows {low} to {high}")
        return None
    return value


def _choice(value, key: str, allowed: list[str], errors: list[str], label=None) -> str | None:
    if value in allowed:
        return value
    shown = ", ".join(label(a) if label else repr(a) for a in allowed)
    errors.append(f"{key}: {value!r} is not offered; choose {shown}")
    return None


def validate(hub: SlurmSettings, raw: Mapping) -> JobRequest:
    """Check a participant's choices (missing ones take the defaults); :class:`FormError`
    lists every problem and what is allowed instead."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise FormError(f"unknown option(s) {', '.join(unknown)}; the form has "
                        f"{', '.join(FIELDS)}")
    d = defaults(hub)
    values = {k: _one(raw, k) if k in raw else getattr(d, k) for k in FIELDS}
    errors: list[str] = []
    partition = _choice(values["partition"], "partition", list(hub.partitions), errors)
    account = (_choice(values["account"], "account (project)", list(hub.accounts), errors)
               if hub.accounts else _choice(values["account"], "account", [""], errors,
                                            lambda a: "none (this site has no accounts)"))
    reservation = _choice(values["reservation"], "reservation",
                          [hub.reservation, NO_RESERVATION] if hub.reservation else
                          [NO_RESERVATION], errors, lambda r: repr(r) if r else "none")
    runtime = cores = gpus = None
    if partition:
        p = hub.partitions[partition]
        where = f"partition {partition!r}"
        runtime = _whole(values["runtime"], "runtime (minutes)", 1, p.max_runtime, where, errors)
        cores = _whole(values["cores"], "cores", 1, p.max_cores, where, errors)
        if p.gpus:
            gpus = _whole(values["gpus"], "gpus", 0, p.gpus, where, errors)
        elif str(values["gpus"]) not in ("0", ""):
            with_gpus = [n for n, q in hub.partitions.items() if q.gpus]
            errors.append(f"gpus: {where} has no GPUs; ask for 0 there"
                          + (f", or choose {', '.join(with_gpus)}" if with_gpus else ""))
        else:
            gpus = 0
    if errors:
        raise FormError("; ".join(errors))
    return JobRequest(account=account, partition=partition, reservation=reservation,
                      runtime=runtime, cores=cores, gpus=gpus)


# --- the HTML form (JupyterHub puts it inside its own <form>) ------------------------------

def _select(name: str, label: str, options: list[tuple[str, str]], chosen: str,
            extra: str = "") -> str:
    opts = "".join(f'<option value="{html.escape(v)}"{" selected" if v == chosen else ""}'
                   f"{extra_attr}>{html.escape(text)}</option>"
                   for v, text, extra_attr in
                   ((o[0], o[1], o[2] if len(o) > 2 else "") for o in options))
    return (f'<div class="form-group mb-3"><label class="form-label" for="psml-{name}">'
            f'{label}</label><select class="form-select" id="psml-{name}" name="{name}"'
            f"{extra}>{opts}</select></div>")


def _number(name: str, label: str, value: int, low: int, high: int, hint: str) -> str:
    return (f'<div class="form-group mb-3"><label class="form-label" for="psml-{name}">'
            f'{label}</label><input class="form-control" type="number" id="psml-{name}" '
            f'name="{name}" value="{value}" min="{low}" max="{high}" step="1" required>'
            f'<small class="form-text text-muted" id="psml-{name}-hint">{hint}</small></div>')


def render(hub: SlurmSettings, chosen: JobRequest | None = None) -> str:
    """The form's fields, the defaults (or ``chosen``) preselected. Limits follow the
    partition in the browser; the server checks them again (:func:`validate`)."""
    c = chosen or defaults(hub)
    p = hub.partitions[c.partition]
    parts = []
    if hub.accounts:
        parts.append(_select("account", "Project (Slurm account)",
                             [(a, a) for a in hub.accounts], c.account))
    parts.append(_select(
        "partition", "Partition",
        [(n, f"{n} (up to {q.max_cores} cores, {q.gpus} GPUs, {q.max_runtime} min)",
          f' data-max-cores="{q.max_cores}" data-gpus="{q.gpus}"'
          f' data-max-runtime="{q.max_runtime}"') for n, q in hub.partitions.items()],
        c.partition))
    if hub.reservation:
        parts.append(_select("reservation", "Reservation",
                             [(hub.reservation, f"{hub.reservation} (the workshop's)"),
                              (NO_RESERVATION, "none (wait in the normal queue)")],
                             c.reservation))
    parts.append(_number("runtime", "Runtime (minutes)", c.runtime, 1, p.max_runtime,
                         f"at most {p.max_runtime} min; the job (and your JupyterLab) ends "
                         "then: save your work"))
    parts.append(_number("cores", "Cores (one MPI rank / engine each)", c.cores, 1,
                         p.max_cores, f"1 to {p.max_cores}"))
    parts.append(_number("gpus", "GPUs", c.gpus, 0, p.gpus,
                         f"0 to {p.gpus}" if p.gpus else "this partition has no GPUs"))
    # Keep the browser's limits in step with the chosen partition (the server checks anyway).
    parts.append("""<script>
(function () {
  var sel = document.getElementById("psml-partition");
  function limit(name, max, hint) {
    var el = document.getElementById("psml-" + name);
    el.max = max; if (+el.value > +max) { el.value = max; }
    document.getElementById("psml-" + name + "-hint").textContent = hint;
  }
  sel.addEventListener("change", function () {
    var o = sel.options[sel.selectedIndex].dataset;
    limit("cores", o.maxCores, "1 to " + o.maxCores);
    limit("gpus", o.gpus, +o.gpus ? "0 to " + o.gpus : "this partition has no GPUs");
    limit("runtime", o.maxRuntime, "at most " + o.maxRuntime +
          " min; the job (and your JupyterLab) ends then: save your work");
  });
})();
</script>""")
    return "\n".join(parts)
