// The public open-data portal: search, facets, dataset pages, downloads, API examples, and the
// application for conditionally open data. No login to read; everything through the CKAN API.
'use strict';

const I18N = {
  'zh-CN': {
    brand: '公共数据开放平台', footer: 'Reservoir · 公共数据开放 · 无条件开放数据免登录下载',
    'nav.search': '数据目录', 'nav.api': '开放接口', 'nav.console': '工作台登录',
    'search.placeholder': '搜索数据集，例如 村居、地区生产总值…', 'search.go': '搜索', 'search.found': '共 {n} 个数据集',
    'search.none': '没有找到匹配的数据集。', 'facet.organization': '提供单位', 'facet.groups': '主题', 'facet.res_format': '格式',
    'facet.update_frequency': '更新频率', 'facet.all': '全部', 'tier.open': '无条件开放', 'tier.conditional': '有条件开放',
    'ds.fields': '数据项', 'ds.preview': '数据预览', 'ds.history': '更新记录', 'ds.downloads': '下载', 'ds.api': '接口调用示例',
    'ds.rows': '{n} 行', 'ds.published': '发布于 {t}', 'ds.views': '浏览 {v} 次 · 下载 {d} 次 · 接口调用 {a} 次',
    'ds.masked': '已脱敏', 'ds.version': '版本', 'ds.time': '时间', 'ds.count': '行数', 'ds.maskedCols': '脱敏字段',
    'ds.field': '字段', 'ds.title': '名称', 'ds.type': '类型', 'ds.org': '提供单位', 'ds.freq': '更新频率',
    'apply.title': '申请使用（有条件开放）', 'apply.hint': '有条件开放数据经提供单位审核后共享。请登录工作台账号后提交申请。',
    'apply.public': '有条件开放数据经提供单位审核后共享。没有账号？填写申请人信息并设置登录账号，提交后即可在工作台查看审核进度。',
    'apply.have': '已有账号？', 'apply.name': '申请人姓名', 'apply.org': '单位名称（个人填“个人”）', 'apply.code': '统一社会信用代码（选填）',
    'apply.contact': '联系电话或邮箱', 'apply.account': '登录名（小写字母、数字）', 'apply.password': '密码（至少 10 位，含两类字符）',
    'apply.registered': '申请已提交，等待 {org} 审核。已为您创建账号 {login}，可登录工作台「数据申请」查看进度。',
    'apply.login': '登录后申请', 'apply.purpose': '用途', 'apply.start': '开始日期', 'apply.end': '结束日期', 'apply.volume': '数据量（行）',
    'apply.submit': '提交申请', 'apply.sent': '申请已提交，等待 {org} 审核；可在工作台「数据申请」查看进度。',
    'freq.realtime': '实时', 'freq.hourly': '每小时', 'freq.daily': '每日', 'freq.weekly': '每周', 'freq.monthly': '每月',
    'freq.quarterly': '每季度', 'freq.yearly': '每年', 'freq.irregular': '不定期', 'err': '出错了：', loading: '加载中…',
    prev: '上一页', next: '下一页',
  },
  en: {
    brand: 'Open Data Portal', footer: 'Reservoir · public open data · open datasets download without a login',
    'nav.search': 'Datasets', 'nav.api': 'API', 'nav.console': 'Staff login',
    'search.placeholder': 'Search datasets, e.g. 村居, GDP…', 'search.go': 'Search', 'search.found': '{n} datasets',
    'search.none': 'No dataset matches.', 'facet.organization': 'Publisher', 'facet.groups': 'Topic', 'facet.res_format': 'Format',
    'facet.update_frequency': 'Updates', 'facet.all': 'All', 'tier.open': 'open', 'tier.conditional': 'conditional',
    'ds.fields': 'Fields', 'ds.preview': 'Preview', 'ds.history': 'Update history', 'ds.downloads': 'Downloads', 'ds.api': 'API examples',
    'ds.rows': '{n} rows', 'ds.published': 'published {t}', 'ds.views': '{v} views · {d} downloads · {a} API calls',
    'ds.masked': 'masked', 'ds.version': 'Version', 'ds.time': 'Time', 'ds.count': 'Rows', 'ds.maskedCols': 'Masked columns',
    'ds.field': 'Field', 'ds.title': 'Title', 'ds.type': 'Type', 'ds.org': 'Publisher', 'ds.freq': 'Updates',
    'apply.title': 'Apply for access (conditionally open)', 'apply.hint': 'Conditionally open data is shared after the publishing unit approves. Log in with a staff account to apply.',
    'apply.public': 'Conditionally open data is shared after the publishing unit approves. No account? Say who you are and choose a login; you can follow your application in the console.',
    'apply.have': 'Have an account?', 'apply.name': 'Your name', 'apply.org': 'Organization (or "个人" for yourself)', 'apply.code': 'Unified social credit code (optional)',
    'apply.contact': 'Phone or e-mail', 'apply.account': 'Login name (lowercase letters, digits)', 'apply.password': 'Password (10+ characters, two kinds)',
    'apply.registered': 'Application sent; {org} decides. Your account {login} was created: follow the application under Requests in the console.',
    'apply.login': 'Log in to apply', 'apply.purpose': 'Purpose', 'apply.start': 'From', 'apply.end': 'Until', 'apply.volume': 'Rows',
    'apply.submit': 'Apply', 'apply.sent': 'Application sent; {org} decides. Follow it under Requests in the console.',
    'freq.realtime': 'real time', 'freq.hourly': 'hourly', 'freq.daily': 'daily', 'freq.weekly': 'weekly', 'freq.monthly': 'monthly',
    'freq.quarterly': 'quarterly', 'freq.yearly': 'yearly', 'freq.irregular': 'irregular', 'err': 'Error: ', loading: 'Loading…',
    prev: 'Previous', next: 'Next',
  },
};

let lang = localStorage.getItem('reservoir.lang') || 'zh-CN';
if (!I18N[lang]) lang = 'zh-CN';
function t(key, vars) {
  let s = (I18N[lang] && I18N[lang][key]) || I18N['zh-CN'][key] || key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll('{' + k + '}', v);
  return s;
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const fmt = (n) => new Intl.NumberFormat(lang).format(n);
const time = (s) => (s ? s.replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '');

async function ckan(action, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) q.set(k, typeof v === 'string' ? v : JSON.stringify(v));
  const r = await fetch('/api/3/action/' + action + '?' + q);
  const body = await r.json().catch(() => null);
  if (!body || !body.success) throw new Error((body && body.error && body.error.message) || r.status + ' ' + r.statusText);
  return body.result;
}

function csrf() { const m = document.cookie.match(/(?:^|;\s*)rsv_csrf=([^;]+)/); return m ? m[1] : ''; }

function tier(p) {
  const v = p.reservoir_open_tier;
  return el('span', { class: 'badge ' + (v === 'open' ? 'ok' : 'warn'), 'data-tier': v }, t('tier.' + v));
}

async function pageSearch(main, params) {
  const q = params.get('q') || '';
  const filters = ['organization', 'groups', 'res_format', 'update_frequency'].filter((f) => params.get(f)).map((f) => `${f}:${params.get(f)}`);
  const start = Number(params.get('start') || 0);
  const rows = 10;
  const res = await ckan('package_search', { q, fq: filters.join(' '), rows, start, 'facet.field': ['organization', 'groups', 'res_format', 'update_frequency'] });
  const go = (changes) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) { if (v) p.set(k, v); else p.delete(k); }
    if (!('start' in changes)) p.delete('start');
    location.hash = '#/?' + p;
  };
  const input = el('input', { type: 'search', value: q, placeholder: t('search.placeholder'), 'data-testid': 'portal-search' });
  main.append(el('form', { class: 'search', onsubmit: (ev) => { ev.preventDefault(); go({ q: input.value.trim() }); } },
    input, el('button', { class: 'primary', type: 'submit' }, t('search.go'))));
  const facets = el('div', { class: 'facets', 'data-testid': 'portal-facets' });
  for (const [field, f] of Object.entries(res.search_facets)) {
    const sel = el('select', { 'data-facet': field, onchange: (ev) => go({ [field]: ev.target.value }) },
      el('option', { value: '' }, `${t('facet.' + field)}: ${t('facet.all')}`),
      f.items.map((i) => el('option', { value: i.name, selected: params.get(field) === i.name },
        `${field === 'update_frequency' ? t('freq.' + i.name) : i.display_name} (${i.count})`)));
    facets.append(sel);
  }
  main.append(facets, el('div', { class: 'muted', 'data-testid': 'portal-count' }, t('search.found', { n: fmt(res.count) })));
  const list = el('div', { class: 'results', 'data-testid': 'portal-results' });
  if (!res.results.length) list.append(el('p', { class: 'muted' }, t('search.none')));
  for (const p of res.results) {
    list.append(el('div', { class: 'item' },
      el('a', { class: 'title', href: '#/dataset/' + encodeURIComponent(p.name) }, p.title),
      el('div', { class: 'meta' }, el('span', {}, p.organization ? p.organization.title : ''), tier(p),
        el('span', {}, t('freq.' + p.reservoir_update_frequency)),
        el('span', {}, p.resources.map((r) => r.format).join(' · '))),
      p.notes ? el('div', { class: 'desc' }, p.notes) : null));
  }
  main.append(list);
  if (res.count > rows) {
    main.append(el('div', { class: 'pager' },
      el('button', { class: 'secondary', disabled: start === 0, onclick: () => go({ start: String(Math.max(0, start - rows)) }) }, t('prev')),
      el('span', { class: 'muted' }, `${start + 1}–${Math.min(start + rows, res.count)} / ${res.count}`),
      el('button', { class: 'secondary', disabled: start + rows >= res.count, onclick: () => go({ start: String(start + rows) }) }, t('next'))));
  }
}

function table(headers, rows, testid) {
  return el('div', { class: 'scroll' }, el('table', { 'data-testid': testid },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((v) => el('td', {}, v === null || v === undefined ? '' : String(v))))))));
}

async function pageDataset(main, name) {
  const p = await ckan('package_show', { id: name, reservoir_view: true });
  const open = p.reservoir_open_tier === 'open';
  const latest = (p.reservoir_publications || [])[0];
  const counts = p.reservoir_counts || { views: 0, downloads: 0, api_calls: 0 };
  main.append(
    el('h1', { 'data-testid': 'portal-title' }, p.title),
    el('div', { class: 'kv' }, tier(p), el('span', {}, `${t('ds.org')}: ${p.organization ? p.organization.title : ''}`),
      el('span', {}, `${t('ds.freq')}: ${t('freq.' + p.reservoir_update_frequency)}`),
      latest ? el('span', {}, t('ds.rows', { n: fmt(latest.row_count) }) + ' · ' + t('ds.published', { t: time(latest.published_at) })) : null),
    p.notes ? el('p', {}, p.notes) : null,
    el('p', { class: 'muted', 'data-testid': 'portal-counts' }, t('ds.views', { v: counts.views, d: counts.downloads, a: counts.api_calls })));
  main.append(el('h2', {}, t('ds.fields')), table([t('ds.field'), t('ds.title'), t('ds.type')],
    p.fields.map((f) => [f.id + (f.masked ? ` (${t('ds.masked')})` : ''), f.title, f.type]), 'portal-fields'));
  if (open) {
    main.append(el('h2', {}, t('ds.downloads')), el('div', { class: 'toolbar', 'data-testid': 'portal-downloads' },
      p.resources.map((r) => el('a', { class: 'button secondary', href: r.url, 'data-format': r.format, download: '' }, r.format))));
    const box = el('div', {}, el('p', { class: 'muted' }, t('loading')));
    main.append(el('h2', {}, t('ds.preview')), box);
    ckan('datastore_search', { resource_id: p.name, limit: 10 }).then((r) => {
      const cols = r.fields.map((f) => f.id).filter((c) => c !== '_id');
      box.replaceChildren(table(cols, r.records.map((rec) => cols.map((c) => rec[c])), 'portal-preview'));
    }).catch((e) => box.replaceChildren(el('div', { class: 'error' }, t('err') + e.message)));
    main.append(el('h2', {}, t('ds.history')), table([t('ds.version'), t('ds.time'), t('ds.count'), t('ds.maskedCols')],
      (p.reservoir_publications || []).map((x) => [x.version, time(x.published_at), fmt(x.row_count), x.masked]), 'portal-history'));
    const origin = location.origin;
    main.append(el('h2', {}, t('ds.api')), el('pre', { class: 'code', 'data-testid': 'portal-api' },
      `curl '${origin}/api/3/action/datastore_search?resource_id=${p.name}&limit=5'\n\n` +
      `# pip install ckanapi\nimport ckanapi\nckan = ckanapi.RemoteCKAN('${origin}')\n` +
      `rows = ckan.action.datastore_search(resource_id='${p.name}', limit=100)['records']\n\n` +
      `curl -O '${origin}/open/download/${p.name}.csv'`));
  } else {
    main.append(await applyPanel(p));
  }
}

async function applyPanel(p) {
  const panel = el('div', { class: 'panel form', 'data-testid': 'portal-apply' }, el('h2', { style: 'margin-top:0' }, t('apply.title')), el('p', { class: 'muted' }, t('apply.hint')));
  let me = null;
  try { me = await (await fetch('/api/v1/auth/me')).json(); } catch (_) { /* public */ }
  const day = (d) => d.toISOString().slice(0, 10);
  if (!me || !me.login) {
    panel.replaceChildren(el('h2', { style: 'margin-top:0' }, t('apply.title')), el('p', { class: 'muted' }, t('apply.public')));
    panel.append(publicApplication(p, day));
    panel.append(el('p', { class: 'muted' }, t('apply.have'), ' ',
      el('a', { href: '/', 'data-testid': 'portal-login' }, t('apply.login'))));
    return panel;
  }
  if (!['consumer', 'steward', 'operator'].includes(me.role)) {
    panel.append(el('a', { class: 'button primary', href: '/', 'data-testid': 'portal-login' }, t('apply.login')));
    return panel;
  }
  const purpose = el('textarea', { rows: 2, 'data-testid': 'apply-purpose', required: true });
  const from = el('input', { type: 'date', value: day(new Date()) });
  const until = el('input', { type: 'date', value: day(new Date(Date.now() + 90 * 86400e3)) });
  const volume = el('input', { type: 'number', min: 1 });
  const msg = el('div', {});
  const form = el('form', { onsubmit: async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    const r = await fetch('/api/v1/requests', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
      body: JSON.stringify({ dataset_id: p.reservoir_dataset_id, columns: p.fields.map((f) => f.id), purpose: purpose.value,
        period_start: from.value, period_end: until.value, volume: volume.value ? Number(volume.value) : null }) });
    const body = await r.json().catch(() => ({}));
    if (r.ok) msg.append(el('div', { class: 'ok', 'data-testid': 'apply-sent' }, t('apply.sent', { org: p.organization ? p.organization.title : '' })));
    else msg.append(el('div', { class: 'error' }, t('err') + (body.message || r.statusText)));
  } },
  el('label', {}, t('apply.purpose'), purpose),
  el('div', { class: 'row' }, el('label', {}, t('apply.start'), from), el('label', {}, t('apply.end'), until), el('label', {}, t('apply.volume'), volume)),
  el('button', { class: 'primary', type: 'submit', 'data-testid': 'apply-submit' }, t('apply.submit')), msg);
  panel.append(form);
  return panel;
}

// The application of someone without an account: who they are, the account to create, and
// what the data is for; the server registers them and files the request in one step.
function publicApplication(p, day) {
  const input = (id, attrs = {}) => el('input', Object.assign({ 'data-testid': id, required: true }, attrs));
  const name = input('apply-name', { maxlength: 64 });
  const org = input('apply-org', { maxlength: 128 });
  const code = input('apply-code', { required: false, maxlength: 18, pattern: '[0-9A-HJ-NPQRTUWXYa-hj-npqrtuwxy]{18}' });
  const contact = input('apply-contact', { maxlength: 128 });
  const login = input('apply-login', { pattern: '[a-z0-9][a-z0-9._@\\-]{1,63}', autocomplete: 'username' });
  const password = input('apply-password', { type: 'password', minlength: 10, autocomplete: 'new-password' });
  const purpose = el('textarea', { rows: 2, 'data-testid': 'apply-purpose', required: true });
  const from = el('input', { type: 'date', value: day(new Date()) });
  const until = el('input', { type: 'date', value: day(new Date(Date.now() + 90 * 86400e3)) });
  const msg = el('div', {});
  return el('form', { 'data-testid': 'apply-public', onsubmit: async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    const r = await fetch('/api/v1/open/applications', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ login: login.value, password: password.value, name: name.value, organization: org.value,
        credit_code: code.value || null, contact: contact.value, dataset_id: p.reservoir_dataset_id, purpose: purpose.value,
        period_start: from.value, period_end: until.value }) });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      ev.target.querySelectorAll('input, textarea, button').forEach((e) => { e.disabled = true; });
      msg.append(el('div', { class: 'ok', 'data-testid': 'apply-sent' },
        t('apply.registered', { org: p.organization ? p.organization.title : '', login: body.login })));
    } else msg.append(el('div', { class: 'error', 'data-testid': 'apply-error' }, t('err') + (body.message || r.statusText)));
  } },
  el('div', { class: 'row' }, el('label', {}, t('apply.name'), name), el('label', {}, t('apply.org'), org)),
  el('div', { class: 'row' }, el('label', {}, t('apply.code'), code), el('label', {}, t('apply.contact'), contact)),
  el('div', { class: 'row' }, el('label', {}, t('apply.account'), login), el('label', {}, t('apply.password'), password)),
  el('label', {}, t('apply.purpose'), purpose),
  el('div', { class: 'row' }, el('label', {}, t('apply.start'), from), el('label', {}, t('apply.end'), until)),
  el('button', { class: 'primary', type: 'submit', 'data-testid': 'apply-submit' }, t('apply.submit')), msg);
}

function applyStaticText() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const b of document.querySelectorAll('[data-lang]')) b.classList.toggle('on', b.dataset.lang === lang);
  document.title = t('brand');
}

async function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.ready = 'false';
  try {
    if (parts[0] === 'dataset' && parts[1]) await pageDataset(main, parts[1]);
    else await pageSearch(main, params);
  } catch (e) {
    main.append(el('div', { class: 'error', 'data-testid': 'error' }, t('err') + e.message));
  }
  main.dataset.ready = 'true';
}

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('[data-lang]')) {
    b.addEventListener('click', () => { lang = b.dataset.lang; localStorage.setItem('reservoir.lang', lang); applyStaticText(); route(); });
  }
  applyStaticText();
  window.addEventListener('hashchange', route);
  route();
});
