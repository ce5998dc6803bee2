// The explorer's entry point: the page says which view it is (data-view on <body>).

import { startIndex } from './compose.js';
import { startExplore } from './explore.js';

const app = document.getElementById('app');
if (app) {
  if (document.body.dataset.view === 'explore') void startExplore(app);
  else startIndex(app);
}
