// A QR code as an SVG element, drawn from the modules of `qrcode-generator`: built with
// DOM calls (no markup strings, no data: images), so it needs nothing the page's content
// security policy does not already allow.

import qrcode from 'qrcode-generator';

const SVG = 'http://www.w3.org/2000/svg';
const MODULE_PIXELS = 5;

/** `text` as a QR code with error correction level M and the standard 4-module quiet zone. */
export function qrSvg(text: string, label: string): SVGSVGElement {
  const code = qrcode(0, 'M');
  code.addData(text);
  code.make();
  const count = code.getModuleCount();
  const size = count + 8;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  // A whole number of pixels per module: a fractional scale leaves hairline gaps between
  // modules that a phone's camera may misread.
  svg.setAttribute('width', String(size * MODULE_PIXELS));
  svg.setAttribute('height', String(size * MODULE_PIXELS));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('class', 'qr');
  svg.setAttribute('shape-rendering', 'crispEdges');
  const background = document.createElementNS(SVG, 'rect');
  background.setAttribute('width', String(size));
  background.setAttribute('height', String(size));
  background.setAttribute('fill', '#fff');
  svg.append(background);
  // One rectangle per horizontal run of dark modules.
  let path = '';
  for (let row = 0; row < count; row += 1) {
    let column = 0;
    while (column < count) {
      if (!code.isDark(row, column)) {
        column += 1;
        continue;
      }
      const start = column;
      while (column < count && code.isDark(row, column)) column += 1;
      path += `M${start + 4} ${row + 4}h${column - start}v1h${start - column}z`;
    }
  }
  const modules = document.createElementNS(SVG, 'path');
  modules.setAttribute('d', path);
  modules.setAttribute('fill', '#000');
  svg.append(modules);
  return svg;
}
