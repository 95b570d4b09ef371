// trunk's initializer (index.html, data-initializer): the loading screen's progress while the
// wasm downloads, and `window.bvSplash`, through which the app reports the demo model's download
// and removes the screen (web/src/splash.rs).
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const $ = (id) => document.getElementById(id);
const show = (bar, label, current, total) => {
  if (total) {
    $(bar).max = total;
    $(bar).value = current;
    $(label).textContent = `${mb(current)} of ${mb(total)}`;
  } else {
    $(bar).removeAttribute("value");
    $(label).textContent = mb(current);
  }
};

window.bvSplash = {
  model(current, total) { show("splash-model", "splash-model-bytes", current, total); },
  done() { $("splash")?.remove(); },
};

export default function initializer() {
  return {
    onProgress({ current, total }) { show("splash-app", "splash-app-bytes", current, total); },
    onSuccess() { $("splash-app-bytes").textContent += " · running"; },
    onFailure(reason) {
      $("splash").classList.add("failed");
      const error = $("splash-error");
      error.hidden = false;
      error.textContent = `The app could not start: ${reason}`;
    },
  };
}
