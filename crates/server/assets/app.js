// Reservoir console: a single page over the REST API (/api/v1). Chinese first, English too.
// No build step: plain ES2020, DOM built with el() so that data is never parsed as HTML.
'use strict';

const I18N = {
  'zh-CN': {
    brand: '公共数据平台', footer: 'Reservoir · 数据归集、编目、质量检测与共享',
    'nav.home': '首页', 'nav.catalog': '数据目录', 'nav.sql': 'SQL 查询', 'nav.upload': '上传数据', 'nav.report': '运营报告',
    'rep.title': '数据运营报告', 'rep.unit': '单位', 'rep.month': '月份', 'rep.show': '生成报告', 'rep.print': '打印 / 另存为 PDF',
    'rep.csv': '下载 CSV', 'rep.json': 'JSON', 'pii.suggested': '疑似', 'pii.confirmed': '已确认', 'pii.rejected': '已排除',
    'pii.resident_id': '身份证号', 'pii.credit_code': '统一社会信用代码', 'pii.mobile_phone': '手机号', 'pii.bank_card': '银行卡号',
    'pii.person_name': '姓名', 'pii.address': '地址', 'pii.email': '邮箱',
    'ds.lineage': '数据血缘', 'lin.none': '尚无血缘记录。', 'lin.source': '来源', 'lin.dataset': '数据集', 'lin.quarantine': '隔离区', 'lin.quality': '质量问题',
    'lin.load': '归集', 'lin.check': '质量检测', 'lin.runs': '{n} 次', 'lin.rows': '{n} 行', 'catalog.allTopics': '全部主题', 'ds.notCollected': '仅编目，未归集', 'layer.catalog': '目录',
    'home.title': '平台概览', 'home.units': '委办局', 'home.systems': '业务系统', 'home.datasets': '数据集',
    'home.rows': '数据总量（行）', 'home.storage': '存储使用', 'home.of': '容量', 'home.runs': '采集批次',
    'home.failed': '失败', 'home.byUnit': '各单位归集数据量', 'home.latest': '最近采集',
    'run.time': '时间', 'run.dataset': '数据集', 'run.status': '状态', 'run.read': '读取', 'run.loaded': '入湖',
    'run.quarantined': '隔离', 'run.mode': '方式', 'run.source': '来源', 'run.error': '错误',
    'status.succeeded': '成功', 'status.failed': '失败', 'status.running': '进行中', 'status.interrupted': '已中断',
    'ds.drift': '结构变更', 'drift.none': '来源结构未发生变化。', 'drift.time': '时间', 'drift.column': '字段', 'drift.change': '变更', 'drift.types': '类型', 'drift.action': '处理',
    'drift.added': '新增', 'drift.removed': '删除', 'drift.widened': '放宽', 'drift.narrowed': '收窄', 'drift.changed': '改变',
    'home.alerts': '告警', 'alert.failed': '采集失败', 'alert.late': '更新逾期',
    'catalog.title': '数据资源目录', 'catalog.search': '搜索数据集、字段或描述…', 'catalog.go': '搜索',
    'catalog.allUnits': '全部单位', 'catalog.allLayers': '全部分层', 'catalog.allTiers': '全部开放属性',
    'catalog.found': '共 {n} 个数据集', 'catalog.none': '没有找到匹配的数据集。', 'catalog.prev': '上一页', 'catalog.next': '下一页',
    'ds.rows': '{n} 行', 'ds.unit': '责任单位', 'ds.freq': '更新频率', 'ds.sens': '敏感级别', 'ds.tier': '开放属性',
    'ds.version': '表版本', 'ds.schema': '字段与画像', 'ds.sample': '样例数据', 'ds.runs': '采集记录',
    'ds.field': '字段', 'ds.fieldTitle': '业务名称', 'ds.type': '类型', 'ds.nullRate': '空值率', 'ds.distinct': '不同值',
    'ds.range': '最小 … 最大', 'ds.top': '高频值', 'ds.flags': '标记', 'ds.viewQuarantine': '查看隔离数据',
    'ds.quarantineOf': '批次 #{id} 的隔离数据', 'ds.quarantineNone': '该批次没有隔离数据。', 'ds.allEmpty': '全空',
    'ds.querySql': '用 SQL 查询', 'ds.noProfile': '尚无画像。',
    'q.file': '文件', 'q.line': '行号', 'q.raw': '原始内容', 'q.reason': '原因',
    'sql.title': 'SQL 查询', 'sql.run': '运行', 'sql.csv': '下载 CSV', 'sql.hint': 'Ctrl+Enter 运行 · 表名格式：分层.单位.数据集，例如 raw.minzheng.villages',
    'sql.rows': '{n} 行', 'sql.truncated': '（已截断，仅显示前 {n} 行）', 'sql.ms': '{n} 毫秒', 'sql.examples': '示例：',
    'up.title': '上传数据文件', 'up.unit': '单位标识', 'up.dataset': '数据集名称', 'up.mode': '写入方式',
    'up.append': '追加', 'up.overwrite': '覆盖', 'up.encoding': '文件编码', 'up.auto': '自动识别', 'up.file': '文件',
    'up.submit': '上传并归集', 'up.busy': '正在归集…', 'up.done': '归集完成', 'up.title2': '数据集标题（可选）',
    'up.hint': '支持 CSV、TSV、XLSX、XLS、JSON、NDJSON；编码、分隔符、表头与说明行自动识别。',
    'up.summary': '读取 {read} 行 = 入湖 {loaded} 行 + 隔离 {q} 行', 'up.open': '查看数据集', 'up.files': '文件',
    'up.columns': '字段', 'up.skipped': '跳过的说明行',
    'up.declare': '字段类型（可选）', 'up.columnsHint': '例如 常住人口=int64, 登记日期=date；不符合类型的行进入隔离区',
    'freq.realtime': '实时', 'freq.hourly': '每小时', 'freq.daily': '每日', 'freq.weekly': '每周', 'freq.monthly': '每月',
    'freq.quarterly': '每季度', 'freq.yearly': '每年', 'freq.irregular': '不定期',
    'tier.open': '无条件开放', 'tier.conditional': '有条件开放', 'tier.closed': '非开放',
    'layer.raw': '贴源层', 'layer.std': '标准层', 'layer.base': '基础库', 'layer.theme': '主题库', 'layer.topic': '专题库',
    'layer.open': '开放层', 'layer.quarantine': '隔离区',
    'err.load': '加载失败：', loading: '加载中…', 'null': '空',
    'nav.requests': '数据申请', 'nav.audit': '审计日志',
    'login.title': '登录', 'login.login': '账号', 'login.password': '密码', 'login.submit': '登录', 'login.out': '退出',
    'login.hint': '首个运维账号的密码在 reservoir init / demo 时打印一次。',
    'pw.title': '设置新密码', 'pw.hint': '首次登录须更换密码：至少 10 个字符，包含字母、数字、符号中的两类。',
    'pw.current': '当前密码', 'pw.new': '新密码', 'pw.submit': '保存并重新登录',
    'role.operator': '运维管理员', 'role.steward': '数据管理员', 'role.consumer': '数据使用方', 'role.auditor': '审计员', 'role.public': '公众',
    'req.title': '数据申请', 'req.mine': '我的申请', 'req.toDecide': '待我审批', 'req.none': '暂无申请。',
    'req.dataset': '数据集', 'req.columns': '字段', 'req.purpose': '用途', 'req.period': '使用期限', 'req.volume': '数据量（行）',
    'req.status': '状态', 'req.requester': '申请人', 'req.reason': '审批意见', 'req.grant': '授权',
    'req.pending': '待审批', 'req.approved': '已批准', 'req.rejected': '已驳回', 'req.withdrawn': '已撤回',
    'req.profile': '下载 Delta Sharing 配置', 'req.profileHint': '用 delta-sharing 客户端（Python、Spark、Power BI）读取已授权数据；文件内含新令牌，仅显示一次',
    'req.ask': '申请使用', 'req.askTitle': '申请使用该数据集', 'req.submit': '提交申请', 'req.sent': '申请已提交，等待 {unit} 审批。',
    'req.approve': '批准', 'req.reject': '驳回', 'req.withdraw': '撤回', 'req.rowFilter': '行过滤条件（SQL，可选）',
    'req.mask': '脱敏方式', 'req.until': '截止日期', 'req.note': '审批意见', 'req.rejectReason': '驳回理由', 'req.noAccess': '您尚无该数据集的使用授权。',
    'mask.default': '默认（按个人信息类型与敏感级别）', 'mask.none': '不脱敏', 'mask.redact': '遮盖', 'mask.keep': '保留首尾', 'mask.hash': '加密哈希', 'mask.year': '仅年份', 'mask.street': '到街道', 'mask.null': '置空',
    'aud.title': '审计日志', 'aud.verify': '校验哈希链', 'aud.ok': '哈希链完整：{n} 条记录。', 'aud.broken': '哈希链在第 {seq} 条断裂：{problem}',
    'aud.export': '导出 CSV', 'aud.actor': '操作人', 'aud.action': '操作', 'aud.target': '对象', 'aud.rows': '行数', 'aud.client': '客户端',
    'aud.outcome': '结果', 'aud.filter': '筛选', 'aud.time': '时间',
  },
  en: {
    brand: 'Public Data Platform', footer: 'Reservoir · collect, catalog, inspect and share public data',
    'nav.home': 'Home', 'nav.catalog': 'Catalog', 'nav.sql': 'SQL', 'nav.upload': 'Upload', 'nav.report': 'Reports',
    'rep.title': 'Operation report', 'rep.unit': 'Unit', 'rep.month': 'Month', 'rep.show': 'Show report', 'rep.print': 'Print / save as PDF',
    'rep.csv': 'Download CSV', 'rep.json': 'JSON', 'pii.suggested': 'suggested', 'pii.confirmed': 'confirmed', 'pii.rejected': 'rejected',
    'pii.resident_id': 'resident ID', 'pii.credit_code': 'credit code', 'pii.mobile_phone': 'mobile', 'pii.bank_card': 'bank card',
    'pii.person_name': 'name', 'pii.address': 'address', 'pii.email': 'email',
    'ds.lineage': 'Lineage', 'lin.none': 'No lineage recorded yet.', 'lin.source': 'source', 'lin.dataset': 'dataset', 'lin.quarantine': 'quarantine', 'lin.quality': 'quality issues',
    'lin.load': 'load', 'lin.check': 'check', 'lin.runs': '{n} runs', 'lin.rows': '{n} rows', 'catalog.allTopics': 'All topics', 'ds.notCollected': 'cataloged, not collected', 'layer.catalog': 'catalog',
    'home.title': 'Overview', 'home.units': 'Units', 'home.systems': 'Systems', 'home.datasets': 'Datasets',
    'home.rows': 'Rows', 'home.storage': 'Storage used', 'home.of': 'of', 'home.runs': 'Collection runs',
    'home.failed': 'failed', 'home.byUnit': 'Rows collected per unit', 'home.latest': 'Latest runs',
    'run.time': 'Time', 'run.dataset': 'Dataset', 'run.status': 'Status', 'run.read': 'Read', 'run.loaded': 'Loaded',
    'run.quarantined': 'Quarantined', 'run.mode': 'Mode', 'run.source': 'Source', 'run.error': 'Error',
    'status.succeeded': 'succeeded', 'status.failed': 'failed', 'status.running': 'running', 'status.interrupted': 'interrupted',
    'ds.drift': 'Schema drift', 'drift.none': 'The source\'s columns have not changed.', 'drift.time': 'Time', 'drift.column': 'Column', 'drift.change': 'Change', 'drift.types': 'Types', 'drift.action': 'What was done',
    'drift.added': 'added', 'drift.removed': 'removed', 'drift.widened': 'widened', 'drift.narrowed': 'narrowed', 'drift.changed': 'changed',
    'home.alerts': 'Alerts', 'alert.failed': 'collection failed', 'alert.late': 'late',
    'catalog.title': 'Data catalog', 'catalog.search': 'Search datasets, fields or descriptions…', 'catalog.go': 'Search',
    'catalog.allUnits': 'All units', 'catalog.allLayers': 'All layers', 'catalog.allTiers': 'All open tiers',
    'catalog.found': '{n} datasets', 'catalog.none': 'No dataset matches.', 'catalog.prev': 'Previous', 'catalog.next': 'Next',
    'ds.rows': '{n} rows', 'ds.unit': 'Owner', 'ds.freq': 'Updates', 'ds.sens': 'Sensitivity', 'ds.tier': 'Open tier',
    'ds.version': 'Table version', 'ds.schema': 'Fields and profile', 'ds.sample': 'Sample rows', 'ds.runs': 'Collection runs',
    'ds.field': 'Field', 'ds.fieldTitle': 'Business name', 'ds.type': 'Type', 'ds.nullRate': 'Null %', 'ds.distinct': 'Distinct',
    'ds.range': 'Min … max', 'ds.top': 'Top values', 'ds.flags': 'Flags', 'ds.viewQuarantine': 'View quarantined rows',
    'ds.quarantineOf': 'Quarantined rows of run #{id}', 'ds.quarantineNone': 'This run quarantined no rows.', 'ds.allEmpty': 'all empty',
    'ds.querySql': 'Query with SQL', 'ds.noProfile': 'No profile yet.',
    'q.file': 'File', 'q.line': 'Line', 'q.raw': 'Raw text', 'q.reason': 'Reason',
    'sql.title': 'SQL workbench', 'sql.run': 'Run', 'sql.csv': 'Download CSV', 'sql.hint': 'Ctrl+Enter runs · tables are layer.unit.dataset, e.g. raw.minzheng.villages',
    'sql.rows': '{n} rows', 'sql.truncated': ' (truncated to the first {n})', 'sql.ms': '{n} ms', 'sql.examples': 'Examples:',
    'up.title': 'Upload a data file', 'up.unit': 'Unit id', 'up.dataset': 'Dataset name', 'up.mode': 'Mode',
    'up.append': 'Append', 'up.overwrite': 'Overwrite', 'up.encoding': 'Encoding', 'up.auto': 'Detect', 'up.file': 'File',
    'up.submit': 'Upload and collect', 'up.busy': 'Collecting…', 'up.done': 'Collected', 'up.title2': 'Dataset title (optional)',
    'up.hint': 'CSV, TSV, XLSX, XLS, JSON and NDJSON; encoding, delimiter, header and note lines are detected.',
    'up.summary': 'read {read} rows = loaded {loaded} + quarantined {q}', 'up.open': 'Open the dataset', 'up.files': 'Files',
    'up.columns': 'Columns', 'up.skipped': 'Skipped note lines',
    'up.declare': 'Column types (optional)', 'up.columnsHint': 'e.g. population=int64, registered=date; rows that do not fit are quarantined',
    'freq.realtime': 'real time', 'freq.hourly': 'hourly', 'freq.daily': 'daily', 'freq.weekly': 'weekly', 'freq.monthly': 'monthly',
    'freq.quarterly': 'quarterly', 'freq.yearly': 'yearly', 'freq.irregular': 'irregular',
    'tier.open': 'open', 'tier.conditional': 'conditional', 'tier.closed': 'not open',
    'layer.raw': 'raw', 'layer.std': 'standardized', 'layer.base': 'base', 'layer.theme': 'theme', 'layer.topic': 'topic',
    'layer.open': 'open', 'layer.quarantine': 'quarantine',
    'err.load': 'Could not load: ', loading: 'Loading…', 'null': 'NULL',
    'nav.requests': 'Requests', 'nav.audit': 'Audit',
    'login.title': 'Log in', 'login.login': 'Login', 'login.password': 'Password', 'login.submit': 'Log in', 'login.out': 'Log out',
    'login.hint': 'The first operator\'s password is printed once by reservoir init / demo.',
    'pw.title': 'Set a new password', 'pw.hint': 'A first login must change the password: at least 10 characters, two of letters, digits, symbols.',
    'pw.current': 'Current password', 'pw.new': 'New password', 'pw.submit': 'Save and log in again',
    'role.operator': 'operator', 'role.steward': 'steward', 'role.consumer': 'consumer', 'role.auditor': 'auditor', 'role.public': 'public',
    'req.title': 'Data requests', 'req.mine': 'My requests', 'req.toDecide': 'To decide', 'req.none': 'No requests.',
    'req.dataset': 'Dataset', 'req.columns': 'Columns', 'req.purpose': 'Purpose', 'req.period': 'Period', 'req.volume': 'Rows',
    'req.status': 'Status', 'req.requester': 'Requester', 'req.reason': 'Decision', 'req.grant': 'Grant',
    'req.pending': 'pending', 'req.approved': 'approved', 'req.rejected': 'rejected', 'req.withdrawn': 'withdrawn',
    'req.profile': 'Delta Sharing profile', 'req.profileHint': 'Read the granted data with a delta-sharing client (Python, Spark, Power BI); the file holds a new token, shown once',
    'req.ask': 'Request access', 'req.askTitle': 'Request access to this dataset', 'req.submit': 'Send request', 'req.sent': 'Request sent; {unit} decides.',
    'req.approve': 'Approve', 'req.reject': 'Reject', 'req.withdraw': 'Withdraw', 'req.rowFilter': 'Row filter (SQL, optional)',
    'req.mask': 'Mask', 'req.until': 'Until', 'req.note': 'Note', 'req.rejectReason': 'Reason', 'req.noAccess': 'You have no grant on this dataset.',
    'mask.default': 'default (by PII kind and sensitivity)', 'mask.none': 'none', 'mask.redact': 'redact', 'mask.keep': 'keep ends', 'mask.hash': 'keyed hash', 'mask.year': 'year only', 'mask.street': 'to street', 'mask.null': 'null',
    'aud.title': 'Audit log', 'aud.verify': 'Verify the hash chain', 'aud.ok': 'Hash chain intact: {n} entries.', 'aud.broken': 'Hash chain broken at entry {seq}: {problem}',
    'aud.export': 'Export CSV', 'aud.actor': 'Actor', 'aud.action': 'Action', 'aud.target': 'Target', 'aud.rows': 'Rows', 'aud.client': 'Client',
    'aud.outcome': 'Outcome', 'aud.filter': 'Filter', 'aud.time': 'Time',
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
function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + ' ' + u[i];
}
const time = (s) => (s ? s.replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '');

// The session's CSRF token travels in a readable cookie; state-changing requests echo it.
function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)rsv_csrf=([^;]+)/);
  return m ? m[1] : '';
}

function withCsrf(options) {
  const o = { ...(options || {}) };
  const method = (o.method || 'GET').toUpperCase();
  if (method !== 'GET' && method !== 'HEAD') o.headers = { ...(o.headers || {}), 'X-CSRF-Token': csrfToken() };
  return o;
}

let me = null;

async function api(path, options) {
  const r = await fetch('/api/v1' + path, withCsrf(options));
  if (!r.ok) {
    let msg = r.status + ' ' + r.statusText;
    let code = '';
    try { const body = await r.json(); msg = body.message || msg; code = body.code || ''; } catch (_) { /* not JSON */ }
    const err = new Error(msg); err.status = r.status; err.code = code; throw err;
  }
  if (r.status === 204) return null;
  return r.json();
}

const postJson = (path, body) => api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

function statusBadge(status) {
  const cls = status === 'succeeded' ? 'ok' : status === 'failed' ? 'bad' : 'warn';
  return el('span', { class: 'badge ' + cls, 'data-status': status }, t('status.' + status));
}

function tierBadge(tier) {
  const cls = tier === 'open' ? 'ok' : tier === 'conditional' ? 'warn' : 'grey';
  return el('span', { class: 'badge ' + cls }, t('tier.' + tier));
}

const dsHref = (layer, unit, name) => `#/dataset/${encodeURIComponent(layer)}/${encodeURIComponent(unit)}/${encodeURIComponent(name)}`;

function resultTable(result, testid) {
  const head = el('tr', {}, result.columns.map((c) => el('th', { title: c.data_type }, c.name)));
  const body = result.rows.map((row) => el('tr', {}, row.map((v) => (v === null
    ? el('td', { class: 'null' }, t('null'))
    : el('td', { class: typeof v === 'number' ? 'num' : '' }, String(v))))));
  return el('div', { class: 'scroll' }, el('table', { 'data-testid': testid }, el('thead', {}, head), el('tbody', {}, body)));
}

function showError(target, err) {
  target.append(el('div', { class: 'error', 'data-testid': 'error' }, t('err.load') + err.message));
}

// ----------------------------------------------------------------------------------------------- pages

async function pageHome(main) {
  const s = await api('/stats');
  const c = s.catalog;
  const cap = s.storage.capacity_bytes;
  const pct = cap ? Math.min(100, (s.storage.used_bytes / cap) * 100) : 0;
  main.append(
    el('h1', {}, t('home.title')),
    el('div', { class: 'cards', 'data-testid': 'stats' },
      card(t('home.units'), fmt(c.units)),
      card(t('home.systems'), fmt(c.systems)),
      card(t('home.datasets'), fmt(c.datasets)),
      card(t('home.rows'), fmt(c.rows), null, 'stat-rows'),
      card(t('home.storage'), bytes(s.storage.used_bytes), cap ? `${t('home.of')} ${bytes(cap)} · ${pct.toFixed(2)}%` : '', 'stat-storage', pct),
      card(t('home.runs'), fmt(c.runs), c.failed_runs ? `${fmt(c.failed_runs)} ${t('home.failed')}` : ''),
    ),
  );
  const chartBox = el('div', { class: 'chart', id: 'unit-chart', 'data-testid': 'unit-chart' });
  main.append(el('div', { class: 'panel' }, el('h2', { style: 'margin-top:0' }, t('home.byUnit')), chartBox));
  if (window.echarts) {
    const chart = echarts.init(chartBox);
    const units = s.units.slice().reverse();
    chart.setOption({
      grid: { left: 8, right: 48, top: 8, bottom: 8, containLabel: true },
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      xAxis: { type: 'value' },
      yAxis: { type: 'category', data: units.map((u) => u.unit_name) },
      series: [{ type: 'bar', data: units.map((u) => u.rows), itemStyle: { color: '#0b5cad' }, label: { show: true, position: 'right' } }],
    });
    window.addEventListener('resize', () => chart.resize(), { once: true });
  }
  const alerts = await api('/alerts?open=true&limit=20').catch(() => []);
  if (alerts.length) {
    main.append(el('h2', {}, t('home.alerts')), el('div', { class: 'scroll' }, el('table', { 'data-testid': 'alerts' },
      el('tbody', {}, alerts.map((a) => el('tr', {},
        el('td', {}, time(a.raised_at)),
        el('td', {}, el('span', { class: 'badge bad' }, t('alert.' + a.kind))),
        el('td', {}, el('code', {}, a.source)),
        el('td', { class: 'muted' }, a.message)))))));
  }
  main.append(el('h2', {}, t('home.latest')), runsTable(s.latest_runs, true));
}

function card(label, value, sub, testid, pct) {
  return el('div', { class: 'card', 'data-testid': testid },
    el('div', { class: 'label' }, label),
    el('div', { class: 'value' }, value),
    sub ? el('div', { class: 'sub' }, sub) : null,
    pct !== undefined ? el('div', { class: 'bar' }, el('div', { style: `width:${Math.max(pct, 0.5)}%` })) : null);
}

function runsTable(runs, withDataset, onQuarantine) {
  const head = el('tr', {},
    el('th', {}, '#'), el('th', {}, t('run.time')),
    withDataset ? el('th', {}, t('run.dataset')) : el('th', {}, t('run.source')),
    el('th', {}, t('run.status')), el('th', { class: 'num' }, t('run.read')), el('th', { class: 'num' }, t('run.loaded')),
    el('th', { class: 'num' }, t('run.quarantined')), el('th', {}, t('run.error')));
  const rows = runs.map((r) => el('tr', { 'data-run': r.id },
    el('td', {}, r.id),
    el('td', {}, time(r.started_at)),
    withDataset ? el('td', {}, el('a', { href: dsHref(r.layer, r.unit_id, r.dataset) }, r.title)) : el('td', {}, r.source),
    el('td', {}, statusBadge(r.status)),
    el('td', { class: 'num' }, fmt(r.counts.rows_read)),
    el('td', { class: 'num' }, fmt(r.counts.rows_loaded)),
    el('td', { class: 'num' }, r.counts.rows_quarantined && onQuarantine
      ? el('a', { href: '#', 'data-testid': 'view-quarantine', onclick: (ev) => { ev.preventDefault(); onQuarantine(r); } }, fmt(r.counts.rows_quarantined) + ' · ' + t('ds.viewQuarantine'))
      : fmt(r.counts.rows_quarantined)),
    el('td', { class: 'muted' }, r.error || '')));
  return el('div', { class: 'scroll' }, el('table', { 'data-testid': 'runs' }, el('thead', {}, head), el('tbody', {}, rows)));
}

async function pageCatalog(main, params) {
  const q = params.get('q') || '';
  const unit = params.get('unit') || '';
  const layer = params.get('layer') || '';
  const tier = params.get('tier') || '';
  const topic = params.get('topic') || '';
  const offset = Number(params.get('offset') || 0);
  const limit = 20;
  const query = new URLSearchParams({ limit, offset });
  if (q) query.set('q', q);
  if (unit) query.set('unit', unit);
  if (layer) query.set('layer', layer);
  if (tier) query.set('open_tier', tier);
  if (topic) query.set('topic', topic);
  const [page, units] = await Promise.all([api('/datasets?' + query), api('/units')]);
  const unitName = Object.fromEntries(units.map((u) => [u.id, u.name]));

  const go = (changes) => {
    const p = new URLSearchParams({ q, unit, layer, tier, topic, ...changes });
    for (const [k, v] of [...p.entries()]) if (!v || v === '0') p.delete(k);
    location.hash = '#/catalog' + (p.toString() ? '?' + p : '');
  };
  const input = el('input', { type: 'search', value: q, placeholder: t('catalog.search'), 'data-testid': 'catalog-search', 'aria-label': t('catalog.search') });
  const facetSelect = (values, current, all, label, key, testid) => el('select', {
    'data-testid': testid, 'aria-label': all, onchange: (ev) => go({ [key]: ev.target.value, offset: 0 }),
  }, el('option', { value: '' }, all), values.map((f) => el('option', { value: f.value, selected: f.value === current }, `${label(f.value)} (${f.count})`)));
  main.append(
    el('h1', {}, t('catalog.title')),
    el('form', { class: 'search', onsubmit: (ev) => { ev.preventDefault(); go({ q: input.value.trim(), offset: 0 }); } },
      input,
      facetSelect(page.facets.units, unit, t('catalog.allUnits'), (v) => unitName[v] || v, 'unit', 'facet-unit'),
      facetSelect(page.facets.layers, layer, t('catalog.allLayers'), (v) => t('layer.' + v), 'layer', 'facet-layer'),
      facetSelect(page.facets.open_tiers, tier, t('catalog.allTiers'), (v) => t('tier.' + v), 'tier', 'facet-tier'),
      page.facets.topics.length ? facetSelect(page.facets.topics, topic, t('catalog.allTopics'), (v) => v, 'topic', 'facet-topic') : null,
      el('button', { class: 'primary', type: 'submit' }, t('catalog.go'))),
    el('div', { class: 'muted', 'data-testid': 'catalog-count' }, t('catalog.found', { n: fmt(page.total) })),
  );
  const list = el('div', { class: 'results', 'data-testid': 'catalog-results' });
  if (!page.items.length) list.append(el('p', { class: 'muted' }, t('catalog.none')));
  for (const d of page.items) {
    list.append(el('div', { class: 'item' },
      el('a', { class: 'title', href: dsHref(d.layer, d.unit_id, d.name) }, d.title),
      el('div', { class: 'meta' },
        el('code', {}, `${d.layer}.${d.unit_id}.${d.name}`),
        el('span', {}, unitName[d.unit_id] || d.unit_id),
        el('span', {}, d.table_version === null ? t('ds.notCollected') : t('ds.rows', { n: fmt(d.row_count) })),
        el('span', {}, t('freq.' + d.update_frequency)),
        d.topic ? el('span', {}, d.topic) : null,
        tierBadge(d.open_tier)),
      d.description ? el('div', { class: 'desc' }, d.description) : null));
  }
  main.append(list);
  if (page.total > limit) {
    main.append(el('div', { class: 'pager' },
      el('button', { class: 'secondary', disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - limit) }) }, t('catalog.prev')),
      el('span', { class: 'muted' }, `${offset + 1}–${Math.min(offset + limit, page.total)} / ${page.total}`),
      el('button', { class: 'secondary', disabled: offset + limit >= page.total, onclick: () => go({ offset: offset + limit }) }, t('catalog.next'))));
  }
}

async function pageDataset(main, layer, unit, name) {
  const base = `/datasets/${encodeURIComponent(layer)}/${encodeURIComponent(unit)}/${encodeURIComponent(name)}`;
  const detail = await api(base);
  const d = detail.dataset;
  const qualified = `${d.layer}.${d.unit_id}.${d.name}`;
  main.append(
    el('h1', { 'data-testid': 'dataset-title' }, d.title),
    el('div', { class: 'kv' },
      el('code', {}, qualified),
      tierBadge(d.open_tier),
      el('span', { class: 'badge grey' }, t('layer.' + d.layer))),
    d.description ? el('p', {}, d.description) : null,
    el('div', { class: 'cards' },
      card(t('ds.unit'), detail.unit_name || d.unit_id),
      card(t('home.rows'), fmt(d.row_count), null, 'dataset-rows'),
      card(t('ds.freq'), t('freq.' + d.update_frequency)),
      card(t('ds.sens'), String(d.sensitivity)),
      card(t('ds.version'), d.table_version === null ? '–' : String(d.table_version))),
    el('div', { class: 'toolbar' },
      el('a', { href: '#/sql?q=' + encodeURIComponent(`SELECT * FROM ${sqlName(d)} LIMIT 100`) }, t('ds.querySql'))),
  );

  // Fields with their profile.
  main.append(el('h2', {}, t('ds.schema')));
  const prof = Object.fromEntries((detail.profile ? detail.profile.columns : []).map((p) => [p.column_name, p]));
  const head = el('tr', {}, [t('ds.field'), t('ds.fieldTitle'), t('ds.type'), t('ds.nullRate'), t('ds.distinct'), t('ds.range'), t('ds.top')]
    .map((h, i) => el('th', { class: i === 3 || i === 4 ? 'num' : '' }, h)));
  const pii = Object.fromEntries((detail.pii || []).map((m) => [m.field, m]));
  const rows = detail.fields.map((f) => {
    const p = prof[f.name];
    const mark = pii[f.name];
    const piiBadge = mark && mark.status !== 'rejected'
      ? el('span', { class: 'badge ' + (mark.status === 'confirmed' ? 'bad' : 'warn'), style: 'margin-left:6px', 'data-testid': 'pii-' + f.name },
        `${t('pii.' + mark.kind)} · ${t('pii.' + mark.status)}`)
      : null;
    const nullRate = p && p.row_count ? ((p.null_count / p.row_count) * 100).toFixed(1) + '%' : '–';
    const top = p ? p.top_values.slice(0, 3).map((v) => `${v.value === null ? t('null') : v.value} ×${fmt(v.count)}`).join('，') : '';
    return el('tr', {},
      el('td', {}, el('code', {}, f.name), piiBadge),
      el('td', {}, f.title, f.description ? el('div', { class: 'muted' }, f.description) : null),
      el('td', {}, f.data_type, f.flags.includes('all_empty') ? el('span', { class: 'badge warn', style: 'margin-left:6px' }, t('ds.allEmpty')) : null),
      el('td', { class: 'num' }, nullRate),
      el('td', { class: 'num' }, p ? fmt(p.distinct_count) : '–'),
      el('td', {}, p ? `${p.min_value ?? '–'} … ${p.max_value ?? '–'}` : '–'),
      el('td', { class: 'top-values' }, top));
  });
  main.append(el('div', { class: 'scroll' }, el('table', { 'data-testid': 'schema' }, el('thead', {}, head), el('tbody', {}, rows))));
  if (!detail.profile) main.append(el('p', { class: 'muted' }, t('ds.noProfile')));

  // Sample rows: through the caller's grants (masked, filtered); without one, a request form.
  main.append(el('h2', {}, t('ds.sample')));
  const sampleBox = el('div', {}, el('p', { class: 'muted' }, t('loading')));
  main.append(sampleBox);
  api(base + '/sample?limit=20')
    .then((r) => { sampleBox.replaceChildren(resultTable(r, 'sample')); })
    .catch((err) => {
      sampleBox.replaceChildren();
      if (err.status === 403 && me && ['consumer', 'steward'].includes(me.role)) {
        sampleBox.append(el('p', { class: 'muted' }, t('req.noAccess')), requestForm(d, detail));
      } else showError(sampleBox, err);
    });

  // Runs, with their quarantined rows on demand.
  main.append(el('h2', {}, t('ds.runs')));
  const qBox = el('div', { 'data-testid': 'quarantine' });
  const showQuarantine = async (run) => {
    qBox.replaceChildren(el('h2', {}, t('ds.quarantineOf', { id: run.id })), el('p', { class: 'muted' }, t('loading')));
    try {
      const r = await api(`/runs/${run.id}/quarantine?limit=200`);
      r.columns = r.columns.map((c) => ({ ...c, name: { _source_file: t('q.file'), _source_row: t('q.line'), raw: t('q.raw'), reason: t('q.reason') }[c.name] || c.name }));
      qBox.lastChild.replaceWith(r.rows.length ? resultTable(r, 'quarantine-rows') : el('p', {}, t('ds.quarantineNone')));
    } catch (err) { showError(qBox, err); }
  };
  main.append(runsTable(detail.runs, false, showQuarantine), qBox);

  // Lineage: where the rows came from and where rejected and failing rows went.
  main.append(el('h2', {}, t('ds.lineage')));
  const linBox = el('div', { class: 'chart', 'data-testid': 'lineage', style: 'height:260px' });
  main.append(linBox);
  api(base + '/lineage').then((g) => {
    if (!g.edges.length) { linBox.replaceChildren(el('p', { class: 'muted' }, t('lin.none'))); linBox.style.height = 'auto'; return; }
    linBox.dataset.edges = String(g.edges.length);
    if (!window.echarts) return;
    const column = { source: 0, dataset: 1, quarantine: 2, quality: 2 };
    const perColumn = {};
    const colors = { source: '#6b7a8f', dataset: '#0b5cad', quarantine: '#c0392b', quality: '#d68910' };
    const short = (n) => (n.kind === 'source' ? n.label.replace(/^source\s+/, '').split('/').pop() : n.label);
    const nodes = g.nodes.map((n) => {
      const c = column[n.kind];
      const row = (perColumn[c] = (perColumn[c] || 0) + 1) - 1;
      return { id: n.id, name: short(n), x: c * 300, y: row * 70, symbolSize: n.kind === 'dataset' ? 22 : 16,
        itemStyle: { color: colors[n.kind] }, label: { show: true, position: 'bottom' },
        tooltip: { formatter: `${t('lin.' + n.kind)}: ${n.label}${n.title ? '<br>' + n.title : ''}` } };
    });
    const chart = echarts.init(linBox);
    chart.setOption({
      animation: false,
      tooltip: {},
      series: [{ type: 'graph', layout: 'none', roam: true, edgeSymbol: ['none', 'arrow'], edgeSymbolSize: 9,
        data: nodes,
        links: g.edges.map((e) => ({ source: e.from, target: e.to, lineStyle: { width: 2, color: '#98a6b8' },
          label: { show: true, formatter: `${t('lin.' + e.kind)} · ${t('lin.runs', { n: e.runs })}`, fontSize: 11 },
          tooltip: { formatter: `${t('lin.' + e.kind)}: ${t('lin.runs', { n: e.runs })}, ${t('lin.rows', { n: fmt(e.rows) })}` } })) }],
    });
  }).catch((err) => showError(linBox, err));

  // Schema drift of the source: what changed, and what the collection did about it.
  main.append(el('h2', {}, t('ds.drift')));
  const driftBox = el('div', { 'data-testid': 'drift' });
  main.append(driftBox);
  api(base + '/drift').then((events) => {
    if (!events.length) { driftBox.replaceChildren(el('p', { class: 'muted' }, t('drift.none'))); return; }
    const head = el('tr', {}, ['drift.time', 'drift.column', 'drift.change', 'drift.types', 'drift.action'].map((k) => el('th', {}, t(k))));
    driftBox.replaceChildren(el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, head), el('tbody', {}, events.map((e) => el('tr', {},
      el('td', {}, time(e.at)),
      el('td', {}, el('code', {}, e.column_name)),
      el('td', {}, el('span', { class: 'badge ' + (e.change === 'changed' ? 'bad' : 'warn') }, t('drift.' + e.change))),
      el('td', {}, [e.old_type, e.new_type].filter(Boolean).join(' → ')),
      el('td', { class: 'muted' }, e.action)))))));
  }).catch((err) => showError(driftBox, err));
}

function requestForm(d, detail) {
  const today = new Date();
  const later = new Date(today.getTime() + 90 * 86400e3);
  const day = (x) => x.toISOString().slice(0, 10);
  const boxes = detail.fields.filter((f) => !f.name.startsWith('_')).map((f) => el('label', { class: 'check' },
    el('input', { type: 'checkbox', name: 'col', value: f.name, checked: true }), ' ', f.name, f.title ? ` (${f.title})` : ''));
  const purpose = el('textarea', { name: 'purpose', 'data-testid': 'req-purpose', rows: 2, required: true });
  const start = el('input', { type: 'date', name: 'start', value: day(today) });
  const end = el('input', { type: 'date', name: 'end', value: day(later) });
  const volume = el('input', { type: 'number', name: 'volume', min: 1, placeholder: '10000' });
  const msg = el('div', { 'data-testid': 'req-result' });
  const form = el('form', { class: 'panel form', 'data-testid': 'request-form', onsubmit: async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    try {
      await postJson('/requests', {
        dataset_id: d.id,
        columns: [...form.querySelectorAll('input[name=col]:checked')].map((c) => c.value),
        purpose: purpose.value, period_start: start.value, period_end: end.value,
        volume: volume.value ? Number(volume.value) : null,
      });
      msg.append(el('div', { class: 'ok', 'data-testid': 'req-sent' }, t('req.sent', { unit: detail.unit_name || d.unit_id })));
    } catch (err) { showError(msg, err); }
  } },
  el('h3', { style: 'margin-top:0' }, t('req.askTitle')),
  el('div', {}, el('strong', {}, t('req.columns')), el('div', { class: 'checks' }, boxes)),
  el('label', {}, t('req.purpose'), purpose),
  el('div', { class: 'row' }, el('label', {}, t('req.period'), start, ' – ', end), el('label', {}, t('req.volume'), volume)),
  el('button', { class: 'primary', type: 'submit', 'data-testid': 'req-submit' }, t('req.submit')),
  msg);
  return form;
}

function sqlName(d) {
  const id = (s) => (/^[a-z_][a-z0-9_]*$/.test(s) ? s : '"' + s.replaceAll('"', '""') + '"');
  return `${id(d.layer)}.${id(d.unit_id)}.${id(d.name)}`;
}

async function pageSql(main, params) {
  const editor = el('textarea', { class: 'sql', spellcheck: 'false', 'data-testid': 'sql-editor', 'aria-label': 'SQL' });
  editor.value = params.get('q') || localStorage.getItem('reservoir.sql') || 'SELECT 1';
  const out = el('div', { 'data-testid': 'sql-result' });
  const status = el('span', { class: 'muted', 'data-testid': 'sql-status' });
  const run = async () => {
    localStorage.setItem('reservoir.sql', editor.value);
    out.replaceChildren(el('p', { class: 'muted' }, t('loading')));
    status.textContent = '';
    try {
      const r = await api('/sql', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sql: editor.value, limit: 1000 }) });
      out.replaceChildren(resultTable(r, 'sql-table'));
      status.textContent = t('sql.rows', { n: fmt(r.row_count) }) + (r.truncated ? t('sql.truncated', { n: fmt(r.row_count) }) : '') + ' · ' + t('sql.ms', { n: r.elapsed_ms });
    } catch (err) { out.replaceChildren(); showError(out, err); }
  };
  const csv = async () => {
    try {
      const r = await fetch('/api/v1/sql', withCsrf({ method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sql: editor.value, format: 'csv' }) }));
      if (!r.ok) { const b = await r.json(); throw new Error(b.message); }
      const blob = await r.blob();
      const a = el('a', { href: URL.createObjectURL(blob), download: 'query.csv' });
      document.body.append(a); a.click(); a.remove();
    } catch (err) { showError(out, err); }
  };
  editor.addEventListener('keydown', (ev) => { if ((ev.ctrlKey || ev.metaKey) && ev.key === 'Enter') { ev.preventDefault(); run(); } });
  const chips = el('div', { class: 'chips' }, el('span', { class: 'muted' }, t('sql.examples')));
  main.append(el('h1', {}, t('sql.title')), chips, editor,
    el('div', { class: 'toolbar' },
      el('button', { class: 'primary', onclick: run, 'data-testid': 'sql-run' }, t('sql.run')),
      el('button', { class: 'secondary', onclick: csv, 'data-testid': 'sql-csv' }, t('sql.csv')),
      status),
    el('div', { class: 'muted', style: 'font-size:12px' }, t('sql.hint')),
    out);
  try {
    const page = await api('/datasets?limit=6');
    for (const d of page.items) {
      const q = `SELECT * FROM ${sqlName(d)} LIMIT 100`;
      chips.append(el('button', { class: 'chip', type: 'button', onclick: () => { editor.value = q; run(); } }, d.title));
    }
    if (!params.get('q') && !localStorage.getItem('reservoir.sql') && page.items.length) editor.value = `SELECT * FROM ${sqlName(page.items[0])} LIMIT 100`;
  } catch (_) { /* examples are optional */ }
  if (params.get('q')) run();
}

async function pageUpload(main) {
  const units = await api('/units');
  const unitList = el('datalist', { id: 'unit-ids' }, units.map((u) => el('option', { value: u.id }, u.name)));
  const f = {
    unit: el('input', { type: 'text', name: 'unit', list: 'unit-ids', required: true, 'data-testid': 'upload-unit', pattern: '[^\\/.\\s]+' }),
    dataset: el('input', { type: 'text', name: 'dataset', required: true, 'data-testid': 'upload-dataset', pattern: '[^\\/.\\s]+' }),
    title: el('input', { type: 'text', name: 'title', 'data-testid': 'upload-title' }),
    columns: el('input', { type: 'text', name: 'column', 'data-testid': 'upload-columns', placeholder: t('up.columnsHint') }),
    mode: el('select', { name: 'mode', 'data-testid': 'upload-mode' }, el('option', { value: 'append' }, t('up.append')), el('option', { value: 'overwrite' }, t('up.overwrite'))),
    encoding: el('select', { name: 'encoding', 'data-testid': 'upload-encoding' }, el('option', { value: '' }, t('up.auto')),
      ['utf-8', 'gbk', 'gb18030', 'utf-16le'].map((e) => el('option', { value: e }, e.toUpperCase()))),
    file: el('input', { type: 'file', name: 'file', required: true, multiple: true, 'data-testid': 'upload-file', accept: '.csv,.tsv,.txt,.xlsx,.xls,.xlsm,.json,.ndjson,.jsonl' }),
  };
  const submit = el('button', { class: 'primary', type: 'submit', 'data-testid': 'upload-submit' }, t('up.submit'));
  const out = el('div', { 'data-testid': 'upload-result' });
  const form = el('form', { class: 'upload', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = new FormData();
    for (const file of f.file.files) body.append('file', file, file.name);
    body.append('mode', f.mode.value);
    if (f.encoding.value) body.append('encoding', f.encoding.value);
    if (f.title.value) body.append('title', f.title.value);
    if (f.columns.value.trim()) body.append('column', f.columns.value);
    submit.disabled = true; submit.textContent = t('up.busy');
    out.replaceChildren();
    try {
      const r = await api(`/datasets/raw/${encodeURIComponent(f.unit.value)}/${encodeURIComponent(f.dataset.value)}/upload`, { method: 'POST', body });
      out.append(runSummary(r));
    } catch (err) { showError(out, err); } finally { submit.disabled = false; submit.textContent = t('up.submit'); }
  } },
  el('label', {}, t('up.unit')), f.unit,
  el('label', {}, t('up.dataset')), f.dataset,
  el('label', {}, t('up.title2')), f.title,
  el('label', {}, t('up.declare')), f.columns,
  el('label', {}, t('up.mode')), f.mode,
  el('label', {}, t('up.encoding')), f.encoding,
  el('label', {}, t('up.file')), f.file,
  el('span', {}), submit);
  main.append(el('h1', {}, t('up.title')), el('p', { class: 'muted' }, t('up.hint')), unitList, form, out);
}

function runSummary(r) {
  const [, unit, name] = r.table.split('.');
  const c = r;
  return el('div', { class: 'panel', 'data-testid': 'run-summary' },
    el('h2', { style: 'margin-top:0' }, t('up.done'), ' ', statusBadge(r.status), ' ', el('code', {}, r.table)),
    el('p', { class: 'counts', 'data-testid': 'run-counts' }, t('up.summary', { read: fmt(c.rows_read), loaded: fmt(c.rows_loaded), q: fmt(c.rows_quarantined) })),
    el('h2', {}, t('up.files')),
    el('ul', {}, r.files.map((f) => el('li', {}, `${f.path} · ${f.format}${f.encoding ? ' · ' + f.encoding : ''}${f.delimiter ? ' · ' + JSON.stringify(f.delimiter) : ''} · ${bytes(f.bytes)}`,
      f.skipped.length ? el('div', { class: 'muted' }, t('up.skipped') + '：' + f.skipped.map((s) => s.text).join(' / ')) : null))),
    el('h2', {}, t('up.columns')),
    el('p', {}, r.columns.map((col) => `${col.name} (${col.type})`).join('，')),
    r.rejected_sample.length ? el('div', {}, el('h2', {}, t('run.quarantined')), resultTable({
      columns: [{ name: t('q.file') }, { name: t('q.line') }, { name: t('q.raw') }, { name: t('q.reason') }],
      rows: r.rejected_sample.map((x) => [x.source_file, x.line, x.raw, x.reason]),
    }, 'upload-rejected')) : null,
    el('p', {}, el('a', { href: dsHref('raw', unit, name), 'data-testid': 'upload-open' }, t('up.open'))));
}

// ---------------------------------------------------------------------------------------------- report

async function pageReport(main, params) {
  const units = await api('/units');
  const now = new Date();
  const thisMonth = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
  const unit = params.get('unit') || (units[0] && units[0].id) || '';
  const month = params.get('month') || thisMonth;
  const unitSelect = el('select', { 'data-testid': 'report-unit', 'aria-label': t('rep.unit') },
    units.map((u) => el('option', { value: u.id, selected: u.id === unit }, `${u.name} (${u.id})`)));
  const monthInput = el('input', { type: 'month', value: month, 'data-testid': 'report-month', 'aria-label': t('rep.month') });
  const show = () => {
    location.hash = '#/report?' + new URLSearchParams({ unit: unitSelect.value, month: monthInput.value || thisMonth });
  };
  unitSelect.addEventListener('change', show);
  monthInput.addEventListener('change', show);
  main.append(el('h1', {}, t('rep.title')),
    el('form', { class: 'search', onsubmit: (ev) => { ev.preventDefault(); show(); } },
      el('label', {}, t('rep.unit') + ' ', unitSelect), el('label', {}, t('rep.month') + ' ', monthInput),
      el('button', { class: 'primary', type: 'submit' }, t('rep.show'))));
  if (!unit) return;
  const base = `/api/v1/units/${encodeURIComponent(unit)}/report?month=${encodeURIComponent(month)}`;
  const html = `${base}&format=html&lang=${lang === 'en' ? 'en' : 'zh'}`;
  // Fetch first, so that an error shows as an error and not as a page inside the frame.
  await api(`/units/${encodeURIComponent(unit)}/report?month=${encodeURIComponent(month)}`);
  const frame = el('iframe', { src: html, title: t('rep.title'), class: 'report', 'data-testid': 'report-frame' });
  main.append(el('div', { class: 'actions' },
    el('a', { href: html, target: '_blank', rel: 'noopener', class: 'button secondary', 'data-testid': 'report-print' }, t('rep.print')),
    el('a', { href: `${base}&format=csv`, class: 'button secondary', 'data-testid': 'report-csv' }, t('rep.csv')),
    el('a', { href: `${base}&format=json`, target: '_blank', rel: 'noopener', class: 'button secondary' }, t('rep.json'))),
    frame);
}

// ----------------------------------------------------------------------------------- login, requests, audit

function pageLogin(main) {
  const login = el('input', { name: 'login', autocomplete: 'username', 'data-testid': 'login-name', required: true });
  const password = el('input', { name: 'password', type: 'password', autocomplete: 'current-password', 'data-testid': 'login-password', required: true });
  const msg = el('div', {});
  main.append(el('form', { class: 'panel form narrow', 'data-testid': 'login-form', onsubmit: async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    try {
      await postJson('/auth/login', { login: login.value.trim(), password: password.value });
      await loadMe();
      route();
    } catch (err) { showError(msg, err); }
  } },
  el('h1', {}, t('login.title')),
  el('label', {}, t('login.login'), login),
  el('label', {}, t('login.password'), password),
  el('button', { class: 'primary', type: 'submit', 'data-testid': 'login-submit' }, t('login.submit')),
  el('p', { class: 'muted' }, t('login.hint')),
  msg));
}

function pagePassword(main) {
  const current = el('input', { type: 'password', autocomplete: 'current-password', 'data-testid': 'pw-current', required: true });
  const next = el('input', { type: 'password', autocomplete: 'new-password', 'data-testid': 'pw-new', required: true });
  const msg = el('div', {});
  main.append(el('form', { class: 'panel form narrow', 'data-testid': 'password-form', onsubmit: async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    try {
      await postJson('/auth/password', { current: current.value, new: next.value });
      await postJson('/auth/login', { login: me.login, password: next.value });
      await loadMe();
      route();
    } catch (err) { showError(msg, err); }
  } },
  el('h1', {}, t('pw.title')), el('p', { class: 'muted' }, t('pw.hint')),
  el('label', {}, t('pw.current'), current), el('label', {}, t('pw.new'), next),
  el('button', { class: 'primary', type: 'submit', 'data-testid': 'pw-submit' }, t('pw.submit')), msg));
}

const MASKS = ['default', 'none', 'redact', 'keep:1,0', 'keep:3,4', 'keep:6,4', 'hash', 'year', 'street', 'null'];
function maskLabel(m) { const [k, a] = m.split(':'); return t('mask.' + k) + (a ? ` (${a})` : ''); }
function maskValue(m) {
  const [kind, arg] = m.split(':');
  if (kind !== 'keep') return { kind };
  const [first, last] = arg.split(',').map(Number);
  return { kind, first, last };
}

async function pageRequests(main) {
  const [requests, datasets] = await Promise.all([api('/requests'), api('/datasets?limit=500')]);
  const byId = Object.fromEntries(datasets.items.map((d) => [d.id, d]));
  const name = (id) => (byId[id] ? `${byId[id].unit_id}.${byId[id].name}` : String(id));
  const mine = requests.filter((r) => r.requester === me.login);
  const toDecide = requests.filter((r) => r.requester !== me.login && r.status === 'pending'
    && (me.role === 'operator' || (me.role === 'steward' && byId[r.dataset_id] && byId[r.dataset_id].unit_id === me.unit_id)));
  main.append(el('h1', {}, t('req.title')));
  const status = (r) => el('span', { class: 'badge ' + ({ approved: 'ok', rejected: 'bad', pending: 'warn' }[r.status] || 'grey'), 'data-status': r.status }, t('req.' + r.status));
  if (toDecide.length) {
    main.append(el('h2', {}, t('req.toDecide')));
    for (const r of toDecide) main.append(decisionPanel(r, byId[r.dataset_id], name(r.dataset_id), status));
  }
  main.append(el('h2', {}, t('req.mine')));
  if (!mine.length) { main.append(el('p', { class: 'muted' }, t('req.none'))); return; }
  const head = el('tr', {}, ['#', 'req.dataset', 'req.columns', 'req.purpose', 'req.period', 'req.status', 'req.reason', ''].map((k) => el('th', {}, k === '#' || !k ? k : t(k))));
  main.append(el('div', { class: 'scroll' }, el('table', { 'data-testid': 'my-requests' }, el('thead', {}, head), el('tbody', {}, mine.map((r) => el('tr', { 'data-request': r.id },
    el('td', {}, r.id),
    el('td', {}, byId[r.dataset_id] ? el('a', { href: dsHref('raw', byId[r.dataset_id].unit_id, byId[r.dataset_id].name) }, byId[r.dataset_id].title) : name(r.dataset_id)),
    el('td', {}, r.columns.join(', ')),
    el('td', {}, r.purpose),
    el('td', {}, `${r.period_start} – ${r.period_end}`),
    el('td', {}, status(r)),
    el('td', { class: 'muted' }, r.reason),
    el('td', {}, r.status === 'pending'
      ? el('button', { class: 'secondary', onclick: async () => { await postJson(`/requests/${r.id}/withdraw`, {}); route(); } }, t('req.withdraw'))
      : r.status === 'approved' && r.grant_id
        ? el('button', { class: 'secondary', 'data-testid': 'profile-' + r.grant_id, title: t('req.profileHint'), onclick: () => downloadProfile(r.grant_id) }, t('req.profile'))
        : '')))))));
}

// A Delta Sharing profile for a grant: a new token scoped to it, in a file, shown once.
async function downloadProfile(grantId) {
  const r = await fetch(`/api/v1/grants/${grantId}/sharing-profile`, withCsrf({ method: 'POST' }));
  if (!r.ok) { const b = await r.json().catch(() => ({})); alert(b.message || r.statusText); return; }
  const blob = await r.blob();
  const a = el('a', { href: URL.createObjectURL(blob), download: `reservoir-grant-${grantId}.share` });
  document.body.append(a); a.click(); a.remove();
}

function decisionPanel(r, d, name, status) {
  const rows = r.columns.map((c) => {
    const keep = el('input', { type: 'checkbox', checked: true, 'data-col': c });
    const mask = el('select', { 'data-mask': c }, MASKS.map((m) => el('option', { value: m }, maskLabel(m))));
    mask.value = 'default';
    return { c, keep, mask, row: el('tr', {}, el('td', {}, keep), el('td', {}, el('code', {}, c)), el('td', {}, mask)) };
  });
  const filter = el('input', { type: 'text', placeholder: "street = '方松街道'", 'data-testid': 'approve-filter' });
  const until = el('input', { type: 'date', value: r.period_end });
  const note = el('input', { type: 'text' });
  const msg = el('div', {});
  const approve = async () => {
    msg.replaceChildren();
    const kept = rows.filter((x) => x.keep.checked);
    const masks = {};
    for (const x of kept) if (x.mask.value !== 'default') masks[x.c] = maskValue(x.mask.value);
    try {
      await postJson(`/requests/${r.id}/approve`, {
        columns: kept.map((x) => x.c), masks, row_filter: filter.value.trim() || null,
        expires_at: until.value ? until.value + 'T16:00:00Z' : null, note: note.value,
      });
      route();
    } catch (err) { showError(msg, err); }
  };
  const reject = async () => {
    msg.replaceChildren();
    try { await postJson(`/requests/${r.id}/reject`, { reason: note.value }); route(); } catch (err) { showError(msg, err); }
  };
  return el('div', { class: 'panel', 'data-testid': 'decide-' + r.id },
    el('div', { class: 'kv' }, el('strong', {}, `#${r.id} ${d ? d.title : name}`), status(r), el('span', {}, `${t('req.requester')}: ${r.requester}`)),
    el('p', {}, `${t('req.purpose')}: ${r.purpose} · ${t('req.period')}: ${r.period_start} – ${r.period_end}` + (r.volume ? ` · ${t('req.volume')}: ${fmt(r.volume)}` : '')),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, t('req.columns')), el('th', {}, t('req.mask')))), el('tbody', {}, rows.map((x) => x.row))),
    el('div', { class: 'row' }, el('label', {}, t('req.rowFilter'), filter), el('label', {}, t('req.until'), until), el('label', {}, t('req.note'), note)),
    el('div', { class: 'toolbar' },
      el('button', { class: 'primary', onclick: approve, 'data-testid': 'approve-' + r.id }, t('req.approve')),
      el('button', { class: 'secondary', onclick: reject, 'data-testid': 'reject-' + r.id }, t('req.reject'))),
    msg);
}

async function pageAudit(main, params) {
  const q = new URLSearchParams();
  for (const k of ['actor', 'action', 'since']) if (params.get(k)) q.set(k, params.get(k));
  q.set('limit', '500');
  const entries = await api('/audit?' + q);
  const actor = el('input', { value: params.get('actor') || '', placeholder: t('aud.actor') });
  const action = el('input', { value: params.get('action') || '', placeholder: 'data.read' });
  const since = el('input', { type: 'date', value: params.get('since') || '' });
  const verdict = el('div', { 'data-testid': 'audit-verdict' });
  main.append(el('h1', {}, t('aud.title')),
    el('form', { class: 'search', onsubmit: (ev) => { ev.preventDefault();
      const p = new URLSearchParams({ actor: actor.value, action: action.value, since: since.value });
      for (const [k, v] of [...p.entries()]) if (!v) p.delete(k);
      location.hash = '#/audit' + (p.toString() ? '?' + p : ''); } },
    actor, action, since, el('button', { class: 'primary', type: 'submit' }, t('aud.filter')),
    el('button', { class: 'secondary', type: 'button', 'data-testid': 'audit-verify', onclick: async () => {
      verdict.replaceChildren();
      try {
        const v = await api('/audit/verify');
        verdict.append(v.broken
          ? el('div', { class: 'error' }, t('aud.broken', { seq: v.broken.seq, problem: v.broken.problem }))
          : el('div', { class: 'ok' }, t('aud.ok', { n: fmt(v.entries) })));
      } catch (err) { showError(verdict, err); }
    } }, t('aud.verify')),
    el('a', { class: 'button secondary', href: '/api/v1/audit?format=csv&' + q, 'data-testid': 'audit-export' }, t('aud.export'))),
  verdict);
  const head = el('tr', {}, ['#', 'aud.time', 'aud.actor', 'aud.action', 'aud.target', 'aud.rows', 'aud.outcome', 'aud.client'].map((k) => el('th', {}, k === '#' ? k : t(k))));
  main.append(el('div', { class: 'scroll' }, el('table', { 'data-testid': 'audit' }, el('thead', {}, head), el('tbody', {}, entries.map((e) => el('tr', {},
    el('td', {}, e.seq), el('td', {}, time(e.at)), el('td', {}, e.actor), el('td', {}, el('code', {}, e.action)),
    el('td', {}, e.target), el('td', { class: 'num' }, e.row_count === null ? '' : fmt(e.row_count)),
    el('td', {}, el('span', { class: 'badge ' + (e.outcome === 'ok' ? 'ok' : 'bad') }, e.outcome)),
    el('td', { class: 'muted' }, e.client)))))));
}

async function loadMe() {
  me = await api('/auth/me');
  const box = document.getElementById('who');
  box.replaceChildren();
  if (me.login) {
    box.append(el('span', { 'data-testid': 'who' }, `${me.display_name ? me.display_name + ' (' + me.login + ')' : me.login} · ${t('role.' + me.role)}`),
      el('button', { type: 'button', class: 'link', 'data-testid': 'logout', onclick: async () => { await postJson('/auth/logout', {}); me = null; await loadMe(); route(); } }, t('login.out')));
  }
  for (const a of document.querySelectorAll('#nav a[data-roles]')) {
    a.hidden = !me.login || !a.dataset.roles.split(',').includes(me.role);
  }
}

// ---------------------------------------------------------------------------------------------- router

function applyStaticText() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const b of document.querySelectorAll('[data-lang]')) b.classList.toggle('on', b.dataset.lang === lang);
  document.title = 'Reservoir · ' + t('brand');
}

// Routes run one after another: a language switch and a hash change at once would otherwise
// render two pages into <main> together.
let routing = Promise.resolve();
function route() {
  routing = routing.then(renderRoute, renderRoute);
  return routing;
}

async function renderRoute() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const page = parts[0] || 'home';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === (page === 'dataset' ? 'catalog' : page));
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.ready = 'false';
  main.dataset.page = page;
  try {
    if (!me) await loadMe();
    if (!me.login) { pageLogin(main); main.dataset.ready = 'true'; return; }
    if (me.must_change) { pagePassword(main); main.dataset.ready = 'true'; return; }
    if (page === 'home') await pageHome(main);
    else if (page === 'catalog') await pageCatalog(main, params);
    else if (page === 'dataset' && parts.length === 4) await pageDataset(main, parts[1], parts[2], parts[3]);
    else if (page === 'sql') await pageSql(main, params);
    else if (page === 'upload') await pageUpload(main);
    else if (page === 'report') await pageReport(main, params);
    else if (page === 'requests') await pageRequests(main);
    else if (page === 'audit') await pageAudit(main, params);
    else showError(main, new Error('#' + hash));
  } catch (err) {
    if (err.status === 401) { me = null; await loadMe().catch(() => {}); main.replaceChildren(); pageLogin(main); }
    else if (err.code === 'password_change_required') { main.replaceChildren(); pagePassword(main); }
    else showError(main, err);
  }
  main.dataset.ready = 'true';
}

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('[data-lang]')) {
    b.addEventListener('click', () => {
      lang = b.dataset.lang;
      localStorage.setItem('reservoir.lang', lang);
      applyStaticText();
      if (me) loadMe().then(route); else route();
    });
  }
  applyStaticText();
  window.addEventListener('hashchange', route);
  route();
});
