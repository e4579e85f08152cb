// The voting round: fetch a photo, post the guess, show the crowd's answer, fetch the next one.
// Plain JS against the JSON API with the session cookie and the CSRF token; no page reloads.
(function () {
  "use strict";
  const game = document.getElementById("game");
  if (!game) return;
  const $ = (id) => document.getElementById(id);
  const statusLine = $("game-status"), figure = game.querySelector(".game-photo"), face = $("game-face");
  const form = $("guess-form"), input = $("guess-age"), slider = $("guess-slider"), error = $("guess-error");
  const submit = $("guess-submit"), result = $("result"), nextButton = $("next-photo");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let photoId = null, busy = false;

  function show(el, visible) { el.hidden = !visible; }
  function say(text) { statusLine.textContent = text; show(statusLine, !!text); }
  function fmt(x) { return (Math.round(x * 10) / 10).toString(); }

  async function api(url, options) {
    const response = await fetch(url, Object.assign({
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json", "X-CSRFToken": csrf },
    }, options || {}));
    let body = null;
    if (response.status !== 204) { try { body = await response.json(); } catch (e) { body = null; } }
    return { status: response.status, body: body };
  }

  async function loadNext() {
    busy = true;
    show(result, false); show(form, false); show(error, false);
    say("Loading a photo…");
    try {
      const { status, body } = await api(game.dataset.nextUrl, { method: "GET" });
      if (status === 204) { show(figure, false); say("You have guessed every photo. Come back later, or upload one!"); return; }
      if (status !== 200) { say("Could not load a photo (" + status + "). Try again in a moment."); return; }
      photoId = body.id;
      face.src = body.face_url;
      face.alt = "Face to guess (photo " + body.id + ")";
      show(figure, true); say("");
      input.value = ""; slider.value = 30;
      show(form, true); input.focus();
    } catch (e) {
      say("Network problem: " + e.message);
    } finally { busy = false; }
  }

  function showResult(data) {
    const c = data.consensus;
    $("r-guess").textContent = data.age;
    $("r-crowd").textContent = c.apparent_age === null ? "no votes yet"
      : fmt(c.apparent_age) + " years (" + c.n_votes + " vote" + (c.n_votes === 1 ? "" : "s") + ")";
    $("r-real").textContent = data.real_age === null ? "" : data.real_age + " years";
    show($("r-real-row"), data.real_age !== null);
    $("r-model").textContent = data.predicted_apparent_age === null ? "" : fmt(data.predicted_apparent_age) + " years";
    show($("r-model-row"), data.predicted_apparent_age !== null);
    const points = $("r-points");
    if (data.points !== null) points.textContent = "+" + data.points;
    else if (data.pending) points.textContent = "pending until " + data.votes_needed + " more " + (data.votes_needed === 1 ? "person guesses" : "people guess");
    else points.textContent = "none for this account";
    show(form, false); show(result, true); nextButton.focus();
  }

  async function sendGuess(event) {
    event.preventDefault();
    if (busy || photoId === null) return;
    const text = input.value.trim();
    if (!/^\d{1,3}$/.test(text) || Number(text) > 100) {
      error.textContent = "Type a whole number of years from 0 to 100."; show(error, true); input.focus(); return;
    }
    busy = true; submit.disabled = true; show(error, false);
    try {
      const { status, body } = await api(game.dataset.votesUrl.replace("/0/", "/" + photoId + "/"), {
        method: "POST", body: JSON.stringify({ age: Number(text) }),
      });
      if (status === 201) { showResult(body); return; }
      let message = (body && (body.detail || (body.age && body.age[0]))) || ("Error " + status);
      if (status === 409 || status === 404 || status === 403) { message += " Loading another photo…"; setTimeout(loadNext, 1200); }
      error.textContent = message; show(error, true);
    } catch (e) {
      error.textContent = "Network problem: " + e.message; show(error, true);
    } finally { busy = false; submit.disabled = false; }
  }

  input.addEventListener("input", () => { if (/^\d{1,3}$/.test(input.value) && Number(input.value) <= 100) slider.value = input.value; });
  slider.addEventListener("input", () => { input.value = slider.value; });
  // Enter on the slider submits too (the number input submits natively).
  slider.addEventListener("keydown", (e) => { if (e.key === "Enter") sendGuess(e); });
  form.addEventListener("submit", sendGuess);
  nextButton.addEventListener("click", () => { if (!busy) loadNext(); });
  loadNext();
})();
