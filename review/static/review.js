// polingo review: keyboard-driven decisions on the file page (no build step).
"use strict";

(() => {
  const main = document.querySelector("main");
  const page = main && main.dataset.page;
  const nextFile = () => {
    const link = document.getElementById("next-file");
    if (link) window.location.href = link.href;
  };
  if (page === "index") {
    document.addEventListener("keydown", (ev) => {
      if (!ev.ctrlKey && !ev.metaKey && !ev.altKey && (ev.key === "n" || ev.key === "Enter")) {
        ev.preventDefault();
        nextFile();
      }
    });
    return;
  }
  if (page !== "file") return;

  const fid = main.dataset.fid;
  const cards = Array.from(document.querySelectorAll("article.entry"));
  let current = null;

  const open = (card) => !card.classList.contains("done");
  const waiting = (card) => open(card) && !card.classList.contains("skipped");

  function select(card) {
    if (current) current.classList.remove("current");
    current = card || null;
    if (!current) return;
    current.classList.add("current");
    current.focus({ preventScroll: true });
    current.scrollIntoView({ block: "center" });
  }

  // The next entry still needing review after `card` (wrapping), skipped ones last.
  function following(card) {
    const start = cards.indexOf(card);
    const order = cards.slice(start + 1).concat(cards.slice(0, start + 1));
    return order.find(waiting) || order.find(open) || null;
  }

  function setProgress(id, p) {
    document.getElementById(id + "-done").textContent = p.done;
    document.getElementById(id + "-total").textContent = p.total;
    const bar = document.getElementById(id + "-bar");
    bar.max = p.total || 1;
    bar.value = p.done;
  }

  function say(card, text, findings) {
    const box = card.querySelector(".message");
    box.textContent = text;
    if (findings && findings.length) {
      const list = document.createElement("ul");
      for (const f of findings) {
        const item = document.createElement("li");
        item.textContent = f;
        list.appendChild(item);
      }
      box.appendChild(list);
    }
    box.classList.toggle("error", Boolean(text));
  }

  function editing(card, on) {
    card.classList.toggle("editing", on);
    card.querySelectorAll("textarea.edit").forEach((t) => (t.hidden = !on));
    card.querySelectorAll("pre.shown").forEach((p) => (p.hidden = on));
    card.querySelector('[data-action="save"]').hidden = !on;
    if (on) card.querySelector("textarea.edit").focus();
    else card.focus({ preventScroll: true });
  }

  async function act(card, action) {
    if (!card || card.dataset.busy || !open(card)) return;
    const body = { action, rev: card.dataset.rev };
    if (action === "edit") {
      body.texts = Array.from(card.querySelectorAll("textarea.edit"), (t) => t.value);
    }
    card.dataset.busy = "1";
    say(card, "");
    try {
      const response = await fetch(`/api/files/${fid}/entries/${card.dataset.eid}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) {
        say(card, answer.error.message, answer.error.findings);
        return;
      }
      done(card, answer);
    } catch (err) {
      say(card, `not saved: ${err}`);
    } finally {
      delete card.dataset.busy;
    }
  }

  function done(card, answer) {
    setProgress("file", answer.file);
    setProgress("overall", answer.overall);
    const link = document.getElementById("next-file");
    if (link && answer.next_file !== null) link.href = `/files/${answer.next_file}`;
    if (answer.decision === "skipped") {
      card.classList.add("skipped");
    } else {
      editing(card, false);
      card.classList.add("done", answer.decision);
      card.dataset.rev = answer.rev;
      card.querySelector(".badge.state").textContent = answer.decision;
      card.querySelectorAll("pre.shown").forEach((p, i) => {
        p.textContent = answer.texts[i] || "";
      });
    }
    const next = following(card);
    if (!next || (answer.decision === "skipped" && next === card)) {
      document.getElementById("file-end").hidden = false;
    }
    select(next && next !== card ? next : null);
    if (!current) document.getElementById("file-end").scrollIntoView({ block: "center" });
  }

  function move(step) {
    const at = cards.indexOf(current);
    const target = cards[Math.min(Math.max(at + step, 0), cards.length - 1)];
    if (target) select(target);
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.altKey) return;
    const inText = ev.target instanceof HTMLTextAreaElement;
    if (inText) {
      const card = ev.target.closest("article.entry");
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        act(card, "edit");
      } else if (ev.key === "Escape") {
        ev.preventDefault();
        editing(card, false);
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey) return;
    const keys = { a: "accept", r: "reject", s: "skip" };
    if (ev.key === "o" && current && current.querySelector('[data-action="restore"]')) {
      ev.preventDefault();
      act(current, "restore"); // an updated entry: keep its previous translation
    } else if (keys[ev.key]) {
      ev.preventDefault();
      act(current, keys[ev.key]);
    } else if (ev.key === "e" && current && open(current)) {
      ev.preventDefault();
      editing(current, true);
    } else if (ev.key === "j" || ev.key === "ArrowDown") {
      ev.preventDefault();
      move(1);
    } else if (ev.key === "k" || ev.key === "ArrowUp") {
      ev.preventDefault();
      move(-1);
    } else if (ev.key === "n") {
      ev.preventDefault();
      nextFile();
    }
  });

  for (const card of cards) {
    card.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (current !== card) select(card);
      if (!button) return;
      const action = button.dataset.action;
      if (action === "edit") editing(card, true);
      else if (action === "save") act(card, "edit");
      else act(card, action);
    });
  }
  select(cards.find(waiting) || cards.find(open) || null);
})();
