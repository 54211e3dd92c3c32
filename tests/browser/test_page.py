"""The web planner in a real browser: Debian's Chromium, headless, driven by Selenium against `tpfit ui`.

One server and one browser for the module (the test machine has two cores). Every figure the page shows is
compared with `tpfit plan --json` for the same inputs, run as a separate process.
Screenshots go to $TPFIT_SCREENSHOTS (default: a temporary folder, printed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import CONFIGS, ROOT
from tests.inprocess import tpfit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
EXAMPLE_ARGS = ["llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--concurrency", "3"]
"""What the page plans when opened without inputs (cli/ui.py EXAMPLE_QUERY), as `tpfit plan` arguments."""
WAIT_S = 30.0


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    for module in ("selenium", "starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests; missing: {', '.join(missing)} (.ci/run installs them)")
        pytest.skip(f"missing: {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)")


def cli_plan(args: list[str]) -> dict:
    run = tpfit("plan", *args, "--json")
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def server():
    _require_browser()
    proc = subprocess.Popen([sys.executable, "-m", "tpfit", "ui", "--port", "0"], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()  # "tpfit ui: http://127.0.0.1:PORT/ (Ctrl+C stops it)"
        match = re.search(r"http://\S+/", line)
        assert match, f"tpfit ui printed {line!r}"
        yield match[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("TPFIT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


def wait(driver, condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def counter(driver, name: str) -> int:
    return int(driver.execute_script(f"return Number(document.body.dataset.{name} || 0)"))


def wait_counter(driver, name: str, above: int) -> None:
    wait(driver, f"return Number(document.body.dataset.{name} || 0) > {above}", f"the page's {name} > {above}")


def text(driver, element_id: str) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)


def set_value(driver, element_id: str, value: str) -> None:
    """Type into a field as a user does (select all, type), so the page sees its input events."""
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element("id", element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value)


def bars(driver) -> list[dict[str, str]]:
    """{data-field: data-gib} of each GPU's bar."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#bars .bar')].map(bar => Object.fromEntries(
            [...bar.querySelectorAll('.seg')].map(s => [s.dataset.field, s.dataset.gib])));""")


def table_rows(driver) -> list[dict[str, str]]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#layouts tr[data-index]')].map(tr => Object.fromEntries(
            [['verdict', tr.dataset.verdict], ['layout', tr.querySelector('button').textContent],
             ...[...tr.querySelectorAll('td[data-field]')].map(td => [td.dataset.field, td.textContent])]));""")


def check_page_equals_plan(driver, plan: dict) -> None:
    """The answer, the bars of the shown layout and every row of the layouts table against the plan JSON."""
    assert text(driver, "answer") == plan["summary"]
    verdict = text(driver, "verdict")
    if plan["recommended"] is None:
        assert verdict == "✗ nothing starts"
    else:
        best = plan["candidates"][plan["recommended"]]
        words = {"starts": "✓ starts", "refused_at_start": "✗ refused at start",
                 "overflows_at_runtime": "! out of memory", "insufficient_concurrency": "! too few sequences"}
        assert verdict.startswith(words[best["memory"]["verdict"]])
        check_bars(driver, plan, best)
    rows = table_rows(driver)
    assert len(rows) == len(plan["candidates"])
    for row, c in zip(rows, plan["candidates"]):
        lay = c["layout"]
        assert row["layout"].startswith(f"TP{lay['tp']} PP{lay['pp']} DP{lay['dp']}")
        m = c["memory"]
        if m is None:
            assert row["verdict"] == "refused" and row["kv_cache_tokens"] == ""
            continue
        assert row["verdict"] == m["verdict"]
        assert int(row["kv_cache_tokens"].replace(",", "")) == m["kv_cache_tokens"]
        assert row["max_concurrency"] == f"{m['max_concurrency']:.2f}"  # as the terminal shows it (not "14.5", "0")
        for field in ("weights_gib", "kv_cache_gib", "free_gib_per_gpu"):
            assert float(row[field]) == m[field], (field, row, m)
        speed = c.get("speed")
        if speed:  # the speed model's figures, where the plan has them: ms with 1 decimal, tok/s with none
            assert row["speed.bound"] == speed["bound"]
            for key, scale, step in (("ttft_s", 1000, 0.1), ("tpot_s", 1000, 0.1), ("request_output_tok_s", 1, 1),
                                     ("total_output_tok_s", 1, 1)):
                assert abs(float(row[f"speed.{key}"]) - speed[key] * scale) <= step / 2 + 1e-9, (key, row, speed)


def check_bars(driver, plan: dict, candidate: dict) -> None:
    lay = candidate["layout"]
    shown = bars(driver)
    gpus = lay["tp"] * lay["pp"] * lay["dp"]
    assert len(shown) == (gpus if gpus <= 8 else lay["pp"])
    for i, bar in enumerate(shown):
        stage = candidate["memory"]["per_stage"][(i // lay["tp"]) % lay["pp"] if gpus <= 8 else i]
        for field in ("weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib", "kv_cache_gib", "free_gib"):
            if field in bar or stage[field] > 0:
                assert float(bar[field]) == stage[field], (field, bar, stage)


def requests_made(driver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_page_answers_as_the_cli_and_follows_inputs(browser, server, shots):
    browser.get(server)
    wait_counter(browser, "renders", 0)
    check_page_equals_plan(browser, cli_plan(EXAMPLE_ARGS))
    before = bars(browser)
    browser.save_screenshot(str(shots / "desktop-first-view.png"))

    renders = counter(browser, "renders")
    set_value(browser, "f-count", "4")
    set_value(browser, "f-context", "32768")
    wait(browser, "return location.search.includes('32768')", "the URL to follow the inputs")
    wait(browser, f"return Number(document.body.dataset.renders) > {renders} && "
                  "!document.body.classList.contains('busy')", "the new plan")
    args = ["llama-3.1-70b", "--gpus", "4xH100", "--context", "32768", "--concurrency", "3"]
    changed = cli_plan(args)
    check_page_equals_plan(browser, changed)
    assert bars(browser) != before
    assert text(browser, "plan-command") == "tpfit plan " + " ".join(args)

    shared = browser.current_url  # the link to share: a fresh load shows the same inputs and plan
    browser.get(shared)
    wait_counter(browser, "renders", 0)
    assert browser.find_element("id", "f-count").get_attribute("value") == "4"
    check_page_equals_plan(browser, changed)
    assert all(url.startswith(server) for url in requests_made(browser)), "the page asked another host"


def test_invalid_gpu_shows_the_cli_error_beside_the_field(browser, server):
    browser.get(server + "?model=llama-3.1-8b&gpus=2xH100&context=4096")
    wait_counter(browser, "renders", 0)
    errors = counter(browser, "errors")
    set_value(browser, "f-gpu", "H1OO")
    wait_counter(browser, "errors", errors)
    cli = tpfit("plan", "llama-3.1-8b", "--gpus", "2xH1OO", "--context", "4096")
    assert cli.returncode == 2
    assert text(browser, "err-gpus") == cli.stderr.strip().removeprefix("error: ")
    assert browser.find_element("id", "f-gpu").get_attribute("aria-invalid") == "true"
    renders = counter(browser, "renders")
    set_value(browser, "f-gpu", "H100")
    wait_counter(browser, "renders", renders)
    assert text(browser, "err-gpus") == ""


def test_after_an_error_the_previous_plan_is_not_shown_as_the_answer(browser, server):
    """A refused input left the last plan's verdict, answer and figures as they were: "fits ... 4096 tokens" beside
    --context 0, as if it answered it."""
    browser.get(server + "?model=llama-3.1-8b&gpus=1xH100&context=4096")
    wait_counter(browser, "renders", 0)
    opacity = "return getComputedStyle(document.getElementById(arguments[0])).opacity"
    assert browser.execute_script(opacity, "answer") == "1"
    errors, renders = counter(browser, "errors"), counter(browser, "renders")
    set_value(browser, "f-context", "0")
    wait_counter(browser, "errors", errors)
    assert text(browser, "status").endswith("(shown below: the plan of the previous inputs)")
    assert float(browser.execute_script(opacity, "answer")) < 1 and float(browser.execute_script(opacity, "verdict")) < 1
    set_value(browser, "f-context", "8192")
    wait_counter(browser, "renders", renders)
    assert browser.execute_script(opacity, "answer") == "1" and text(browser, "status") == ""


def test_a_number_the_browser_cannot_read_is_named_not_planned_as_the_default(browser, server):
    """A number field holding "1e" reports an empty value: the page planned without --context (the model's whole
    length) and, for the GPU count, one GPU, and said nothing."""
    browser.get(server + "?model=llama-3.1-8b&gpus=2xH100&context=4096")
    wait_counter(browser, "renders", 0)
    renders, command = counter(browser, "renders"), text(browser, "plan-command")
    for field, error_id in (("f-context", "err-context"), ("f-count", "err-gpus")):
        errors = counter(browser, "errors")
        set_value(browser, field, "1e")
        wait_counter(browser, "errors", errors)
        assert text(browser, error_id).endswith(": not a number; type a whole number (digits only)")
        assert browser.find_element("id", field).get_attribute("aria-invalid") == "true"
        time.sleep(0.5)  # past the page's 250 ms pause: no plan follows
        assert (counter(browser, "renders"), text(browser, "plan-command")) == (renders, command)
        set_value(browser, field, {"f-context": "4096", "f-count": "2"}[field])
        wait_counter(browser, "renders", renders)
        renders = counter(browser, "renders")
        assert text(browser, error_id) == "" and text(browser, "plan-command") == command


def test_a_link_plans_every_spelling_the_server_takes_and_shows_its_flags(browser, server):
    """A link with FP8, LATENCY, yes or on (all of which `tpfit plan` and /api/plan take) was planned without them:
    the lists and the checkbox could not hold those spellings, so the page sent the defaults and rewrote the URL.
    The flags it set, and a flag named by an error, sat inside the closed flags box."""
    browser.get(server + "?model=qwen3-30b-a3b&gpus=2xH100&context=8192&kv_cache_dtype=FP8&enforce_eager=yes"
                         "&enable_expert_parallel=on&objective=LATENCY")
    wait_counter(browser, "renders", 0)
    args = ["qwen3-30b-a3b", "--gpus", "2xH100", "--enable-expert-parallel", "--context", "8192", "--kv-cache-dtype",
            "fp8", "--enforce-eager", "--objective", "latency"]
    assert text(browser, "plan-command") == "tpfit plan " + " ".join(args)
    check_page_equals_plan(browser, cli_plan(args))
    assert browser.find_element("id", "flags-box").get_attribute("open") is not None
    browser.get(server + "?model=llama-3.1-8b&gpus=1xH100")
    wait_counter(browser, "renders", 0)
    assert browser.find_element("id", "flags-box").get_attribute("open") is None
    browser.get(server + "?model=llama-3.1-8b&gpus=1xH100&max_num_seqs=0")
    wait_counter(browser, "errors", 0)
    assert text(browser, "err-max_num_seqs").startswith("Invalid value for '--max-num-seqs'")
    assert browser.find_element("id", "f-max_num_seqs").is_displayed()


def test_uploaded_config_is_planned_as_the_cli_plans_that_file(browser, server):
    browser.get(server + "?model=llama-3.1-8b&gpus=2xH100&context=16384")
    wait_counter(browser, "renders", 0)
    renders = counter(browser, "renders")
    config = CONFIGS / "Qwen--Qwen3-32B.json"
    browser.find_element("id", "f-upload").send_keys(str(config))
    wait_counter(browser, "renders", renders)
    assert browser.find_element("id", "f-model").get_attribute("value").startswith("upload:")
    # the file's own name, as the command line takes it: the answer said 'upload-<hash> on 2×H100-SXM'
    assert text(browser, "plan-command") == f"tpfit plan {config.name} --gpus 2xH100 --context 16384"
    plan = cli_plan([str(config), "--gpus", "2xH100", "--context", "16384"])
    assert text(browser, "answer") == plan["summary"]
    check_bars(browser, plan, plan["candidates"][plan["recommended"]])
    assert [r["kv_cache_tokens"] for r in table_rows(browser)] == [
        f"{c['memory']['kv_cache_tokens']:,}" if c["memory"] else "" for c in plan["candidates"]]


def test_an_upload_the_server_never_receives_is_said_beside_the_model(browser, server):
    """The upload's request had no error handling: with the server gone the page said nothing (an unhandled
    rejection in the console)."""
    browser.get(server + "?model=llama-3.1-8b&gpus=1xH100")
    wait_counter(browser, "renders", 0)
    errors = counter(browser, "errors")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        browser.find_element("id", "f-upload").send_keys(str(CONFIGS / "Qwen--Qwen3-32B.json"))
        wait_counter(browser, "errors", errors)
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    assert text(browser, "err-model").startswith("the tpfit server did not answer (")


def test_a_plan_whose_every_layout_is_refused(browser, server):
    args = ["llama-3.1-70b", "--gpus", "3xH100", "--tp", "3"]
    browser.get(server + "?model=llama-3.1-70b&gpus=3xH100&tp=3")
    wait_counter(browser, "renders", 0)
    plan = cli_plan(args)
    assert len(plan["candidates"]) == 1 and plan["recommended"] is None
    check_page_equals_plan(browser, plan)
    assert text(browser, "bars") == "No layout to show."
    assert text(browser, "show-refused-text") == "Show the 1 layout vLLM refuses"  # it said "1 layouts"
    assert browser.find_element("css selector", "#layouts caption").text.startswith("1 layout for 1 × 3 ")


def flag_rows(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#flags tr[data-flag]')].map(tr => tr.dataset.flag)")


def test_a_layout_that_does_not_start_shows_no_flags(browser, server):
    """Nothing fits: the flags table listed the closest layout's, refused at start ('--max-num-seqs 1: the KV cache
    holds 0.00 requests'), under 'vLLM flags' as if to run. The table says why there are none instead; a layout that
    starts still shows its own."""
    browser.get(server + "?model=llama-3.1-70b&gpus=2x3090&context=4096")
    wait_counter(browser, "renders", 0)
    plan = cli_plan(["llama-3.1-70b", "--gpus", "2x3090", "--context", "4096"])
    assert plan["recommended"] is None and text(browser, "answer") == plan["summary"]
    shown = plan["candidates"][plan["closest"]]  # the layout the page selects: the terminal's "Closest layout"
    assert shown["flags"], "the JSON keeps every accepted layout's flags"
    lay = shown["layout"]
    assert text(browser, "mem-layout") == f"· TP{lay['tp']} PP{lay['pp']} DP{lay['dp']}"  # it showed TP1 PP1 DP1's
    check_bars(browser, plan, shown)
    assert flag_rows(browser) == []
    note = browser.find_element("css selector", "#flags caption[data-note=no-flags]").text
    assert note.startswith(f"No flags for TP{lay['tp']} PP{lay['pp']} DP{lay['dp']}: refused at start ("), note
    assert shown["memory"]["reasons"][0] in note and note.endswith("the answer above says what would start."), note
    renders = counter(browser, "renders")
    set_value(browser, "f-gpu", "H100")
    wait_counter(browser, "renders", renders)
    plan = cli_plan(["llama-3.1-70b", "--gpus", "2xH100", "--context", "4096"])
    best = plan["candidates"][plan["recommended"]]
    assert flag_rows(browser) == [f["flag"] for f in best["flags"]]
    assert not browser.find_elements("css selector", "#flags caption")


def test_the_layouts_caption_says_replicas_figures_are_per_replica(browser, server):
    """The table gave TP1 PP1 DP4's KV tokens and concurrency, one engine's, beside TP4's whole without a word."""
    browser.get(server + "?model=llama-3.1-8b&gpus=4xL40S&context=4096")
    wait_counter(browser, "renders", 0)
    caption = browser.find_element("css selector", "#layouts caption").text
    assert caption.endswith(" L40S; KV tokens and max conc. per replica"), caption


def test_deploy_tabs_are_tpfit_deploy_and_keyboard_driven(browser, server):
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    wait_counter(browser, "renders", 0)
    tab = browser.find_element("css selector", "[role=tab][data-format=serve]")
    for fmt in ("serve", "docker", "compose"):
        cli = tpfit("deploy", *EXAMPLE_ARGS, "--format", fmt)
        assert cli.returncode == 0, cli.stderr
        assert (tab.get_attribute("data-format"), tab.get_attribute("aria-selected")) == (fmt, "true")
        assert text(browser, "deploy-text") == cli.stdout
        href = browser.find_element("id", "deploy-download").get_attribute("href")
        assert unquote(href) == "data:text/plain;charset=utf-8," + cli.stdout
        tab.send_keys(Keys.ARROW_RIGHT)  # the next tab, chosen from the keyboard
        tab = browser.switch_to.active_element
    assert browser.switch_to.active_element.get_attribute("data-format") == "k8s"
    for fmt in ("k8s", "grafana"):  # grafana's JSON has no header to read its command from
        browser.find_element("css selector", f"[role=tab][data-format={fmt}]").click()
        assert text(browser, "deploy-command") == (
            "The same file from the command line: " + " ".join(["tpfit", "deploy", *EXAMPLE_ARGS, "--format", fmt]))


def test_without_the_clipboard_copy_selects_the_text_it_copies(browser, server):
    """Where the browser refuses the clipboard (a page served to other machines over http, a denied permission),
    "Copy link" selected the deploy file and said "press Ctrl+C": the user copied serve.sh, not the link."""
    browser.get(server + "?model=llama-3.1-8b&gpus=1xH100")
    wait_counter(browser, "renders", 0)
    browser.execute_cdp_cmd("Browser.setPermission", {"permission": {"name": "clipboard-write"}, "setting": "denied",
                                                      "origin": server.rstrip("/")})
    try:
        for button, expected in (("share-copy", "return location.href"),
                                 ("deploy-copy", "return document.getElementById('deploy-text').textContent")):
            browser.execute_script("document.getElementById('status').textContent = ''")  # the last click's word
            browser.find_element("id", button).click()
            wait(browser, "return document.getElementById('status').textContent.startsWith('Selected')", button)
            selected = browser.execute_script("return getSelection().toString()")
            assert selected == browser.execute_script(expected).rstrip("\n")  # a selection leaves out a final newline
    finally:
        browser.execute_cdp_cmd("Browser.resetPermissions", {})


def test_keyboard_labels_and_verdicts_in_words(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    wait_counter(browser, "renders", 0)
    unlabeled = browser.execute_script("""
        return [...document.querySelectorAll('input, select, button')].filter(e => !e.closest('[hidden]')).filter(e =>
            !(e.id && document.querySelector(`label[for="${e.id}"]`)) && !e.getAttribute('aria-label')
            && !e.textContent.trim()).map(e => e.outerHTML);""")
    assert unlabeled == []
    plan = cli_plan(EXAMPLE_ARGS)
    other = next(i for i, c in enumerate(plan["candidates"])
                 if c["memory"] and c["memory"]["kv_cache_gib"] > 0 and i != plan["recommended"])
    button = browser.find_element("css selector", f"#layouts tr[data-index='{other}'] button")
    button.send_keys(Keys.ENTER)  # a keyboard user picks a layout; its memory is drawn
    assert button.get_attribute("aria-pressed") == "true"
    check_bars(browser, plan, plan["candidates"][other])
    stage = plan["candidates"][other]["memory"]["per_stage"][0]
    kv = f"KV cache: {stage['kv_cache_gib']:.2f} GiB"
    first_bar = browser.find_element("css selector", "#bars .bar")
    browser.execute_script("arguments[0].focus()", first_bar)  # a keyboard stop per GPU reads all its parts
    assert kv in browser.find_element("css selector", ".tip").text
    ActionChains(browser).move_to_element(first_bar.find_element("css selector", ".seg.kv_cache")).perform()
    assert browser.find_element("css selector", ".tip").text == kv  # hover: the part under the pointer
    verdicts = browser.execute_script(
        "return [...document.querySelectorAll('#layouts .tag')].map(t => [t.textContent, getComputedStyle(t).color])")
    assert all(re.match(r"[✓✗!] \w", words) for words, _ in verdicts)
    assert len({color for _, color in verdicts}) > 1  # colour and words
    toggle = browser.find_element("id", "show-refused")
    toggle.send_keys(Keys.SPACE)  # leave out the layouts vLLM refuses
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#layouts tr[data-index]')].filter(r => !r.hidden).map(r => r.dataset.verdict)")
    assert shown == [c["memory"]["verdict"] for c in plan["candidates"]
                     if c["memory"] and c["memory"]["verdict"] != "refused_at_start"]


def test_formats_deploy_refuses_for_the_plan_are_said_not_dropped(browser, server):
    """Llama-3.1-405B on 2x8 H100 spans two nodes: tpfit deploy refuses the single-node formats, and the page showed
    only the others' tabs, without a word on the missing ones."""
    browser.get(server + "?model=llama-3.1-405b&gpus=2x8xH100&context=8192")
    wait_counter(browser, "renders", 0)
    tabs = {b.get_attribute("data-format") for b in browser.find_elements("css selector", "[role=tab]")}
    assert "compose" not in tabs and "lws" in tabs
    cli = tpfit("deploy", "llama-3.1-405b", "--gpus", "2x8xH100", "--context", "8192", "--format", "compose")
    assert cli.returncode == 2
    said = text(browser, "deploy-refused")
    assert said.startswith("Not written for this plan: ") and "compose (" in said
    assert cli.stderr.strip().split("--format compose: ", 1)[1] in said


def test_nothing_to_deploy_is_a_sentence_that_fits_a_phone(browser, server):
    """With no layout to deploy, the page says why in the file's box: as a file it kept its one long line, cut at
    the edge of a 360 px screen (a scroll bar inside the box to read it)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True})
    try:
        browser.get(server + "?model=llama-3.1-70b&gpus=2x3090&context=4096&concurrency=2")
        wait_counter(browser, "renders", 0)
        assert text(browser, "deploy-text").startswith("vLLM would refuse every layout")
        box = browser.find_element("id", "deploy-text").find_element("xpath", "..")
        assert browser.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth", box) <= 1
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_screenshots_desktop_and_narrow(browser, server, shots):
    for name, width in (("desktop", 1280), ("mobile", 390)):
        browser.set_window_size(width, 900)
        browser.get(server)
        wait_counter(browser, "renders", 0)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name}: the page is {overflow}px wider than the window"
        browser.set_window_size(width, min(height + 120, 6000))
        browser.save_screenshot(str(shots / f"{name}.png"))
        assert (shots / f"{name}.png").stat().st_size > 10_000
    browser.set_window_size(1280, 900)


def test_html_report_opens_offline_with_the_same_figures(browser, tmp_path):
    report = tmp_path / "report.html"
    run = tpfit("plan", *EXAMPLE_ARGS, "--html", str(report))
    assert run.returncode == 0, run.stderr
    browser.get("about:blank")
    requests_made(browser)  # drop what came before
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        browser.get(report.as_uri())
        wait_counter(browser, "renders", 0)
        plan = cli_plan(EXAMPLE_ARGS)
        check_page_equals_plan(browser, plan)
        href = browser.find_element("id", "plan-json").get_attribute("href")
        assert json.loads(unquote(href.split(",", 1)[1])) == plan  # the download is `tpfit plan --json`'s object
        assert text(browser, "deploy-text") == tpfit("deploy", *EXAMPLE_ARGS, "--format", "serve").stdout
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources == []
        assert requests_made(browser) == [report.as_uri()]
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def test_no_script_error_reached_the_console(browser):
    """Last in the module: every page above ran without an uncaught error or rejection (the console keeps them;
    a refused input's HTTP 400 is logged as a network entry, which is the page working)."""
    logged = browser.get_log("browser")
    assert [e for e in logged if e["level"] == "SEVERE" and e["source"] != "network"] == []
