// The demo shop: every click goes to POST /v1/events and the answer
// (role, recommendations, reasons) is drawn at once. Plain DOM, no
// framework, so that the page shows exactly what the API returns.
"use strict";

const sessionId = "demo-" + Math.random().toString(16).slice(2, 10);
let lastRole = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child ?? "");
  }
  return node;
}

function status(text) {
  document.getElementById("status").textContent = text;
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = await r.json();
  if (!r.ok) {
    // Error bodies say what was expected and what was found.
    status(`${data.error}: expected ${data.expected}`);
  }
  return { status: r.status, data };
}

function card(item, onClick) {
  const role = [item.gender, item.age_group].filter(Boolean).join(" ");
  const node = el("div", { className: "item" },
    el("div", { className: "name", textContent: item.name }),
    el("div", { className: "meta",
                textContent: `${item.product_type || ""} · ` +
                             `${item.colour || ""}` }),
    el("div", { className: "meta", textContent: role }));
  node.dataset.itemId = item.item_id;
  node.dataset.gender = item.gender || "";
  node.dataset.ageGroup = item.age_group || "";
  node.addEventListener("click", () => onClick(item.item_id));
  return node;
}

async function loadDepartments() {
  const { data } = await api("GET", "/v1/departments");
  const nav = document.getElementById("departments");
  let group = null;
  for (const d of data.departments) {
    if (d.index_group !== group) {
      group = d.index_group;
      nav.append(el("h3", { textContent: group || "other" }));
    }
    const b = el("button", { className: "dept",
                             textContent: `${d.department} (${d.items})` });
    b.dataset.department = d.department;
    b.dataset.indexGroup = d.index_group || "";
    b.addEventListener("click", () => {
      for (const o of nav.querySelectorAll(".on")) o.classList.remove("on");
      b.classList.add("on");
      loadItems({ department: d.department,
                  index_group: d.index_group || "" });
    });
    nav.append(b);
  }
}

async function loadItems(params) {
  const query = new URLSearchParams({ limit: "24", ...params });
  const { status: code, data } = await api("GET", "/v1/items?" + query);
  if (code !== 200) return;
  const title = params.department || `"${params.q}"`;
  document.getElementById("listing").textContent =
    `${title}: ${data.total} articles`;
  const grid = document.getElementById("items");
  grid.replaceChildren(...data.items.map((it) => card(it, click)));
}

function showRole(role) {
  const badge = document.getElementById("role");
  if (!role) return;
  badge.textContent = [role.key, role.size && `size ${role.size}`]
    .filter(Boolean).join(" · ");
  if (lastRole !== null && role.key !== lastRole) {
    const change = document.getElementById("role-change");
    change.textContent = `role changed: ${lastRole} → ${role.key}`;
    change.hidden = false;
  }
  if (role.key !== lastRole) {
    document.getElementById("trail").append(
      el("li", { textContent: role.key }));
  }
  lastRole = role.key;
}

function showAnswer(data) {
  showRole(data.role);
  const who = document.getElementById("who");
  who.textContent = data.user_id ? `logged in: ${data.user_id}`
                                 : "anonymous";
  const recs = document.getElementById("recs");
  recs.replaceChildren(...data.recommendations.map((r) => {
    const li = el("li", { className: "rec" },
      el("div", { className: "name", textContent: r.name }),
      el("div", { className: "reason", textContent: r.reason }),
      el("div", { className: "meta",
                  textContent: `${r.department || ""} · ` +
                               `${r.gender || ""} ${r.age_group || ""}` +
                               ` · score ${r.score.toFixed(4)}` }));
    li.dataset.itemId = r.item_id;
    li.addEventListener("click", () => click(r.item_id));
    return li;
  }));
  const total = Object.values(data.timing_ms || {})
    .reduce((a, b) => a + b, 0);
  document.getElementById("timing").textContent =
    `${data.events} events · bundle ${data.bundle} · ` +
    `${total.toFixed(2)} ms in the engine`;
}

async function send(event) {
  const { status: code, data } = await api(
    "POST", "/v1/events", { session_id: sessionId, ...event });
  if (code === 200) {
    status(`${event.event_type} accepted`);
    showAnswer(data);
  }
  return code;
}

function click(itemId) {
  return send({ event_type: "click", item_id: itemId });
}

async function applyFilters(ev) {
  ev.preventDefault();
  const q = document.getElementById("q").value.trim();
  const filters = {};
  for (const name of ["size", "gender"]) {
    const value = document.getElementById(name).value;
    if (value) filters[name] = value;
  }
  if (Object.keys(filters).length) {
    await send({ event_type: "filter", filters });
  }
  if (q) loadItems({ q });
}

async function login(ev) {
  ev.preventDefault();
  const userId = document.getElementById("user-id").value.trim();
  if (!userId) return;
  // The identify endpoint stitches the session to the customer; a
  // server without it still takes a login event.
  const path = `/v1/sessions/${encodeURIComponent(sessionId)}/identify`;
  const r = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId }) });
  if (r.ok) {
    status("identified");
    showAnswer(await r.json());
  } else if (r.status === 404 || r.status === 405) {
    await send({ event_type: "login", user_id: userId });
  } else {
    const data = await r.json();
    status(`${data.error}: expected ${data.expected}`);
  }
}

document.getElementById("filters").addEventListener("submit",
                                                     applyFilters);
document.getElementById("login-form").addEventListener("submit", login);
loadDepartments();
api("GET", `/v1/recommendations?session_id=${sessionId}&k=20`)
  .then(({ data }) => showAnswer(data));
