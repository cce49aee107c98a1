"""The report's HTML sections, rendered from model.py's document into pytest-html's summary.

Static HTML (no script needed to read it, print it or use it with a screen reader); statuses
are shown by colour and by a text label, so they survive black-and-white print.
"""

from html import escape

from iommu_audit.report import model, verify

LABELS = {"passed": ("✔", "PASS"), "failed": ("✘", "FAIL"), "error": ("✘", "ERROR"),
          "not-checked": ("?", "NOT CHECKED"), "waived": ("W", "WAIVED"), "advisory": ("!", "ADVISORY"),
          "not-applicable": ("–", "N/A")}
VERDICT_CLASS = {model.READY: "ready", model.READY_WITH_WAIVERS: "waived", model.NOT_READY: "not-ready"}


def e(value) -> str:
    return escape(str(value if value is not None else ""))


def render(doc: dict) -> str:
    parts = [header(doc), verdicts(doc)]
    parts += [matrix(doc, h) for h in doc["hosts"]]
    parts += [host_facts(doc), findings(doc), waivers(doc), fix_runs(doc), integrity(doc), sign_off(doc),
              verify.embed(doc)]
    return '<div id="iommu-audit">' + "\n".join(parts) + "</div>"


def _rows(pairs) -> str:
    return "".join(f'<tr><th scope="row">{e(k)}</th><td>{v}</td></tr>' for k, v in pairs)


def header(doc: dict) -> str:
    run = doc["run"]
    pairs = [("Profile", f"<strong>{e(run['profile'])}</strong> <span class='muted'>{e(run['profile_path'])}</span>"),
             ("Profile SHA-256", f"<code>{e(run['profile_sha256'])}</code>"),
             ("Audited", f"{e(run['time'])} by {e(run['user'])}@{e(run['machine'])}"),
             ("Mode", e(run["mode"])),
             ("iommu-audit", e(run["version"])),
             ("Content SHA-256", f"<code>{e(doc['sha256'])}</code> <a href='#integrity'>how to verify</a>")]
    return f'<section id="run" aria-label="Audit run"><table class="ia-kv">{_rows(pairs)}</table></section>'


def _badge(verdict: str) -> str:
    return f'<span class="verdict {VERDICT_CLASS[verdict]}">{e(verdict)}</span>'


def verdicts(doc: dict) -> str:
    rows = "".join(
        f'<tr><th scope="row"><a href="#host-{e(h["name"])}">{e(h["name"])}</a></th><td>{_badge(h["verdict"])}</td>'
        f'<td>{e(model.counts_text(h["counts"]) or "no check ran")}</td>'
        f'<td>{e(h["error"]) if h["error"] else e(h["source"])}</td></tr>' for h in doc["hosts"])
    return ('<section id="verdicts"><h2>Verdict</h2><table class="ia-table"><thead><tr><th scope="col">Host</th>'
            '<th scope="col">Verdict</th><th scope="col">Checks</th><th scope="col">Audited from</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>")


def _cell(r: dict | None) -> str:
    if r is None:
        return '<td class="st-none"><span class="sr-only">not in scope</span></td>'
    icon, label = LABELS[r["status"]]
    subject = r["subject"] or r["host"]
    return (f'<td class="st-{r["status"]}"><a href="#{model.anchor(r)}" '
            f'title="{e(r["requirement"])} on {e(subject)}: {label}"><span aria-hidden="true">{icon}</span> '
            f"{label}</a></td>")


def matrix(doc: dict, host: dict) -> str:
    mine = [r for r in doc["judged"]["results"] if r["host"] == host["name"]]
    by_cell = {(r["requirement"], r["subject"]): r for r in mine}
    cols = host["columns"]
    head = "".join(f'<th scope="col" class="subject">{e(c["name"])}<span class="kind">'
                   f'{e("whole host" if c["subject"] is None else c["kind"].replace("_", " "))}</span></th>'
                   for c in cols)
    rows = []
    for rid, req in doc["requirements"].items():
        if not any(r["requirement"] == rid for r in mine):
            continue
        cells = "".join(_cell(by_cell.get((rid, c["subject"]))) for c in cols)
        rows.append(f'<tr><th scope="row">{e(req["title"])}<span class="rid">{e(rid)} · {e(req["severity"])}'
                    f"</span></th>{cells}</tr>")
    return (f'<section class="matrix" id="matrix-{e(host["name"])}"><h2>Compliance matrix: {e(host["name"])} '
            f'{_badge(host["verdict"])}</h2><table class="ia-matrix"><caption class="sr-only">Requirements (rows) by '
            f'subject (columns) on {e(host["name"])}; each cell links to its finding</caption>'
            f'<thead><tr><th scope="col">Requirement</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "</section>")


def host_facts(doc: dict) -> str:
    out = []
    for h in doc["hosts"]:
        f = h["facts"]
        if not f:
            out.append(f'<section class="host" id="host-{e(h["name"])}"><h3>{e(h["name"])}</h3>'
                       f'<p>No facts: {e(h["error"])}</p></section>')
            continue
        system = " ".join(x for x in (f["system_vendor"], f["product"]) if x) or "unreadable"
        bios = " ".join(x for x in (f["bios_version"], f["bios_date"]) if x) or "unreadable"
        pairs = [("Hostname", e(f["hostname"])), ("System", e(system)),
                 ("Serial number", e(f["serial"] or "unreadable (needs root)")),
                 ("BIOS", e(bios)), ("CPU", e(f["cpu_model"] or f["cpu_vendor"])),
                 ("Distribution", e(f["distro"] or "unknown")), ("Kernel", e(f["kernel"])),
                 ("Kernel command line", f"<code>{e(f['cmdline'])}</code>"),
                 ("Facts from", e(h["source"] + (f" at {h['gathered_at']}" if h["gathered_at"] else "")))]
        out.append(f'<section class="host" id="host-{e(h["name"])}"><h3>{e(h["name"])} {_badge(h["verdict"])}</h3>'
                   f'<table class="ia-kv">{_rows(pairs)}</table></section>')
    return '<section id="hosts"><h2>Hosts</h2>' + "".join(out) + "</section>"


def _finding(doc: dict, r: dict) -> str:
    req = doc["requirements"][r["requirement"]]
    icon, label = LABELS[r["status"]]
    subject = f'{r["subject"]} on {r["host"]}' if r["subject"] else r["host"]
    pairs = [("Why", e(req["rationale"])), ("Found", e(r["found"] or r["reason"]))]
    if r["expected"]:
        pairs.append(("Expected", e(r["expected"])))
    if r["evidence"]:
        pairs.append(("Evidence", "<pre>" + e("\n".join(r["evidence"])) + "</pre>"))
    if r["fix"] and r["status"] not in ("passed", "not-applicable"):
        script = doc.get("fix_scripts", {}).get(r["requirement"])
        fix = f"<code>{e(r['fix'])}</code>"
        if script:
            fix += (f"<br>automated: <code>{e(script)}</code> "
                    f"(run by <code>pytest --profile {e(doc['run']['profile'])} --fix</code>)")
        pairs.append(("Fix", fix))
    if r["reason"] and r["found"] and r["status"] in ("not-checked", "error", "not-applicable"):
        pairs.append(("Note", e(r["reason"])))
    if r["waiver"]:
        w = r["waiver"]
        expired = w["expires"] < doc["run"]["time"][:10]
        pairs.append(("Waiver", f'{e(w["reason"])}; approved by {e(w["approved_by"])}; '
                                + (f'<strong class="expired">EXPIRED on {e(w["expires"])}</strong>' if expired
                                   else f'expires {e(w["expires"])}')))
    return (f'<article class="finding st-{r["status"]}" id="{model.anchor(r)}"><h4><span class="label">'
            f'<span aria-hidden="true">{icon}</span> {label}</span> {e(req["title"])} — {e(subject)}'
            f'<span class="rid">{e(r["requirement"])} · {e(r["severity"])}</span></h4>'
            f'<table class="ia-kv">{_rows(pairs)}</table></article>')


def findings(doc: dict) -> str:
    out = ['<section id="findings"><h2>Findings</h2><p class="muted">Every requirement on every subject; '
           "what was found, what was expected, the evidence read from the host, and how to fix it.</p>"]
    for h in doc["hosts"]:
        mine = [r for r in doc["judged"]["results"] if r["host"] == h["name"]]
        out.append(f'<h3>{e(h["name"])} {_badge(h["verdict"])}</h3>' + "".join(_finding(doc, r) for r in mine))
    return "".join(out) + "</section>"


def waivers(doc: dict) -> str:
    if not doc["waivers"]:
        return '<section id="waivers"><h2>Waivers</h2><p>The profile grants no waiver.</p></section>'
    rows = []
    for w in doc["waivers"]:
        state = ('<strong class="expired">EXPIRED</strong>' if w["expired"] else f'{w["days_left"]} days left')
        applied = ", ".join(f'<a href="#{_anchor_of(doc, i)}">{e(i.split("::")[-1])}</a>' for i in w["applies_to"])
        rows.append(f'<tr class="{"expired" if w["expired"] else ""}"><td>{e(w["requirement"])}</td>'
                    f'<td>{e(w["subject"] or "all")}</td><td>{e(w["host"] or "all")}</td><td>{e(w["reason"])}</td>'
                    f'<td>{e(w["approved_by"])}</td><td>{e(w["expires"])}</td><td>{state}</td>'
                    f'<td>{applied or "—"}</td></tr>')
    return ('<section id="waivers"><h2>Waivers</h2><table class="ia-table"><thead><tr>'
            + "".join(f'<th scope="col">{h}</th>' for h in ("Requirement", "Subject", "Host", "Reason", "Approved by",
                                                           "Expires", "Status", "Applied to"))
            + f'</tr></thead><tbody>{"".join(rows)}</tbody></table></section>')


def _anchor_of(doc: dict, node_id: str) -> str:
    return next(model.anchor(r) for r in doc["judged"]["results"] if r["id"] == node_id)


def fix_runs(doc: dict) -> str:
    if not doc["fix_runs"]:
        return ('<section id="fix-runs"><h2>Remediation (--fix)</h2>'
                "<p>No remediation was run: this report is a read-only audit.</p></section>")
    return '<section id="fix-runs"><h2>Remediation (--fix)</h2>' + "".join(
        _fix_run(run) for run in doc["fix_runs"]) + "</section>"


def _fix_run(run: dict) -> str:
    """One host's --fix (or --undo) run as the fix session records it (see NOTES.md): plan, steps, before/after."""
    steps_rebooting = [st for st in run.get("steps") or [] if st.get("reboot")]
    reboot = ('<strong class="expired">REBOOT REQUIRED</strong> for the boot configuration to take effect'
              if run.get("reboot_required") else
              f"the plan needs a reboot ({len(steps_rebooting)} step(s) below); nothing was applied"
              if steps_rebooting and run.get("outcome") != "applied" else "no reboot needed")
    head = (f'<h3>{e(run.get("host"))}: {e(run.get("outcome"))}</h3><table class="ia-kv">'
            + _rows([("Run", f'<code>{e(run.get("run_id"))}</code>, log on the host: <code>{e(run.get("log_dir"))}</code>'),
                     ("Reboot", reboot)]) + "</table>")
    steps = []
    for i, st in enumerate(run.get("steps") or [], 1):
        what = e(st.get("summary") or st.get("step") or "")
        if st.get("commands"):
            what += "<pre>" + e("\n".join(st["commands"])) + "</pre>"
        for f in st.get("files") or []:
            what += f'<div class="muted">{e(f.get("path"))}</div><pre>' + e("\n".join(f.get("diff") or [])) + "</pre>"
        script = f'<code>fixes/{e(st.get("requirement"))}.sh</code>' if st.get("kind", "change") == "change" else \
            e(st.get("kind"))
        status = e(st.get("status")) + (f' <span class="muted">(was {e(st["status_before"])})</span>'
                                        if st.get("status_before") else "")
        output = f'<pre>{e(st["output"][-2000:])}</pre>' if st.get("output") else ""
        steps.append(f'<tr><td>{i}</td><td>{e(st.get("requirement"))}<span class="rid">{e(st.get("subject"))}</span>'
                     f'</td><td>{what}</td><td>{script}</td><td>{"yes" if st.get("reboot") else "no"}</td>'
                     f'<td class="fix-{e(st.get("status"))}">{status}{output}</td></tr>')
    table = ('<table class="ia-table"><thead><tr>' + "".join(
        f'<th scope="col">{h}</th>' for h in ("#", "Requirement", "Step", "Script", "Reboot", "Result"))
        + f'</tr></thead><tbody>{"".join(steps)}</tbody></table>') if steps else "<p>No step planned.</p>"
    before, after = run.get("before") or {}, run.get("after")
    rows = []
    for key in sorted(set(before) | set(after or {})):
        now = "not re-audited" if after is None else (f"still failing: {after[key]}" if key in after else "passes")
        cls = "" if after is None else ("st-failed" if key in after else "st-passed")
        rows.append(f'<tr><td><code>{e(key)}</code></td><td>{e(before.get(key, "passed"))}</td>'
                    f'<td class="{cls}">{e(now)}</td></tr>')
    compare = ('<h4>Re-audit: before and after</h4><table class="ia-table"><thead><tr><th scope="col">Check</th>'
               '<th scope="col">Before the fix</th><th scope="col">After the fix</th></tr></thead>'
               f'<tbody>{"".join(rows)}</tbody></table>') if rows else ""
    return f'<div class="fix-run">{head}<h4>Plan and steps</h4>{table}{compare}</div>'


def integrity(doc: dict) -> str:
    name = "REPORT.html"
    return ('<section id="integrity"><h2>Integrity</h2><table class="ia-kv">'
            + _rows([("Content SHA-256", f"<code>{e(doc['sha256'])}</code><br><span class='muted'>over the profile, "
                                         "the facts read from each host and every result; the same facts re-audited "
                                         "give the same hash</span>"),
                     ("File seal (SHA-256)", verify.seal_placeholder()
                      + "<br><span class='muted'>over every byte of this file, the seal written as zeros</span>"),
                     ("Verify", f"<code>iommu-audit verify {name}</code> (or <code>python -m iommu_audit.report "
                                f"verify {name}</code>)"),
                     ("Re-audit", f"<code>iommu-audit facts {name} facts.json; pytest --profile="
                                  f"{e(doc['run']['profile'])} --facts=facts.json --report</code>")])
            + "</table></section>")


def sign_off(doc: dict) -> str:
    lines = "".join(f'<div class="line"><span>{label}</span></div>'
                    for label in ("Auditor (name)", "Date", "Signature"))
    hosts = ", ".join(f'{h["name"]}: {h["verdict"]}' for h in doc["hosts"])
    return ('<section id="sign-off"><h2>Sign-off</h2>'
            f'<p>I have reviewed this report (content SHA-256 <code>{e(doc["sha256"][:16])}…</code>; {e(hosts)}).</p>'
            '<p class="decision"><span class="box"></span> approved for go-live &nbsp; '
            '<span class="box"></span> approved with the waivers listed &nbsp; '
            f'<span class="box"></span> not approved</p><div class="lines">{lines}</div></section>')
