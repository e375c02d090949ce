// The simrec page: browse the catalog, click a product for its most similar ones, or search with a photo or words.
"use strict";

const PAGE_SIZE = 24;
const state = { offset: 0, label: "", total: 0 };
const $ = (id) => document.getElementById(id);

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  showWarning(body.warning);
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function showWarning(message) {
  const box = $("warning");
  if (message === undefined) return;
  box.textContent = message ? "Warning: " + message : "";
  box.hidden = !message;
}

function tile(item, extra) {
  const li = document.createElement("li");
  li.className = "tile";
  li.tabIndex = 0;
  li.dataset.productId = item.product_id;
  const img = document.createElement("img");
  img.alt = item.product_id;
  img.loading = "lazy";
  if (item.image_url) img.src = item.image_url;
  const caption = document.createElement("div");
  caption.className = "caption";
  caption.textContent = item.product_id + (item.label ? " (" + item.label + ")" : "");
  li.append(img, caption);
  if (extra) li.append(extra);
  const open = () => showSimilar(item.product_id);
  li.addEventListener("click", open);
  li.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
  return li;
}

async function loadPage() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE });
  if (state.label) params.set("label", state.label);
  try {
    const page = await getJSON("/api/products?" + params);
    state.total = page.total;
    const select = $("label");
    if (select.options.length === 1) {
      for (const label of page.labels) select.add(new Option(label, label));
    }
    $("grid").replaceChildren(...page.items.map((item) => tile(item)));
    const last = Math.min(state.offset + PAGE_SIZE, page.total);
    $("page-info").textContent = page.total ? `${state.offset + 1}-${last} of ${page.total}` : "no products";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= page.total;
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

function k() {
  return Math.max(1, parseInt($("k").value, 10) || 5);
}

// On by default: a shopper wants k different products, not the same photo twice.
function distinct() {
  return $("distinct").checked;
}

function showAnswer(answer, title, queryImage) {
  const figure = $("query");
  const img = document.createElement("img");
  img.alt = "query";
  if (queryImage) img.src = queryImage;
  const caption = document.createElement("figcaption");
  caption.textContent = answer.query.product_id
    ? answer.query.product_id + (answer.query.label ? " (" + answer.query.label + ")" : "")
    : answer.query.text ? `"${answer.query.text}"` : "your photo";
  if (queryImage) figure.replaceChildren(img, caption);
  else figure.replaceChildren(caption);
  $("results").replaceChildren(...answer.results.map((result) => {
    const distance = document.createElement("div");
    distance.className = "distance";
    distance.textContent = `#${result.rank}  distance ${result.distance.toFixed(4)}`;
    const li = tile(result, distance);
    li.classList.add("result");
    return li;
  }));
  $("answer-title").textContent = title;
  $("answer").hidden = false;
  $("answer").scrollIntoView({ behavior: "smooth", block: "start" });
  showError("");
}

async function showSimilar(productId) {
  const path = productId.split("/").map(encodeURIComponent).join("/");
  try {
    const answer = await getJSON(`/api/products/${path}/similar?k=${k()}&distinct=${distinct()}`);
    showAnswer(answer, `Most similar to ${productId}`, answer.query.image_url);
  } catch (error) {
    showError(error.message);
  }
}

async function searchPhoto(file) {
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  try {
    const answer = await getJSON(`/api/similar?k=${k()}&distinct=${distinct()}`, { method: "POST", body: form });
    showAnswer(answer, `Most similar to your photo ${file.name}`, URL.createObjectURL(file));
  } catch (error) {
    showError(error.message);
  }
}

// Words instead of a photo: answered on indexes made with a SigLIP or CLIP preset (the server says so otherwise).
async function searchText(text) {
  if (!text.trim()) return;
  try {
    const query = `text=${encodeURIComponent(text)}&k=${k()}&distinct=${distinct()}`;
    const answer = await getJSON(`/api/search?${query}`);
    showAnswer(answer, `Best matches for "${text}"`, null);
  } catch (error) {
    showError(error.message);
  }
}

function setUp() {
  $("label").addEventListener("change", (event) => {
    state.label = event.target.value;
    state.offset = 0;
    loadPage();
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadPage(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadPage(); });
  $("photo").addEventListener("change", (event) => searchPhoto(event.target.files[0]));
  $("text-search").addEventListener("submit", (event) => {
    event.preventDefault();
    searchText($("text").value);
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    searchPhoto(event.dataTransfer.files[0]);
  });
  getJSON("/health")
    .then((health) => {
      $("summary").textContent = `${health.items} products, vectors from ${health.model} (${health.weights}).`;
    })
    .catch((error) => showError(error.message));
  loadPage();
}

setUp();
